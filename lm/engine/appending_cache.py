"""Cache layers that append each decode step's keys and values in place, and can take back the last columns.

transformers' ``DynamicLayer`` concatenates the whole cache with every step's new columns
(``torch.cat``), and its sliding-window layer copies its window the same way: a large share of a CPU
decode step (docs/benchmarks.md). Here a layer writes each step's columns into a buffer with room to
spare and hands attention views of it.
A buffer is remade (one copy) only when it is full, or when the running batch has replaced the
layer's tensors (a row joined or left): the views it handed out are then no longer the layer's.

In the running batch every layer keeps all its columns, sliding-window layers included: the batch
passes attention masks that apply the window by position (``running_batch``), since a step that
verifies drafted tokens leaves columns that no row uses and a window counted in columns would be wrong.
``drop_last`` takes back a step's trailing columns that no row kept.

Rows join and leave without copying the whole cache where they can (``join_rows``, ``keep_rows``): the
buffers keep spare rows, so a joining request is written alone into one, and the rows after one that left
move up in place. Leading columns no row uses any more stay in the buffers, before the span the layer hands
out, and a wider request joining later extends the span back into them. Otherwise (a request wider than that
room, no spare row) the batch's tensors are written once into fresh buffers with room, where padding,
concatenating and remaking the buffer at the next step would copy the cache three times.
"""

from types import MethodType

_ROOM = 64  # spare columns per (re)made buffer: one copy every 64 columns instead of one per step
_ROW_ROOM = 2  # spare rows: a request joining where one just left is written alone, not the whole batch again


def append_in_place(cache) -> None:
    """Make every layer of ``cache`` (full or sliding-window ``DynamicCache`` layers) append decode steps in place,
    keeping all columns."""
    for layer in cache.layers:
        layer.update = MethodType(_update, layer)


def drop_last(cache, columns: int) -> None:
    """Forget the last ``columns`` columns of every layer (appended by the latest step)."""
    if columns <= 0:
        return
    for layer in cache.layers:
        start, stop = layer.appended_span
        layer.appended_span = start, stop - columns
        _view(layer, layer.keys.shape[0])


def join_rows(cache, other, width: int) -> None:
    """Put the rows of ``other`` (a cache with the same layers) below those of ``cache``, both right-aligned to
    ``width`` columns (zeros to the left of a shorter one)."""
    for ours, theirs in zip(cache.layers, other.layers, strict=True):
        rows, joining = ours.keys.shape[0], theirs.keys.shape[0]
        wider = width - ours.keys.shape[-2]  # columns the batch gains on the left
        if (_current(ours) and 0 <= wider <= ours.appended_span[0]
                and rows + joining <= ours.appended_buffers[0].shape[0]):
            # Spare rows, and columns enough on the left (left there when leading columns were dropped): write the
            # joining rows alone, and zeros into the batch's rows' new leading columns.
            start, stop = ours.appended_span[0] - wider, ours.appended_span[1]
            for buffer, states in zip(ours.appended_buffers, (theirs.keys, theirs.values), strict=True):
                buffer[:rows, :, start : start + wider] = 0
                missing = width - states.shape[-2]
                buffer[rows : rows + joining, :, start : start + missing] = 0
                buffer[rows : rows + joining, :, start + missing : stop] = states
            ours.appended_span = start, stop
            _view(ours, rows + joining)
        else:
            _remake(ours, width, [(slice(0, rows), ours.keys, ours.values),
                                  (slice(rows, rows + joining), theirs.keys, theirs.values)])


def keep_rows(cache, rows: list[int], start: int) -> None:
    """Keep only the rows ``rows`` of every layer, from column ``start`` on."""
    ascending = all(a < b for a, b in zip(rows, rows[1:], strict=False))
    for layer in cache.layers:
        if ascending and _current(layer):
            # In place: the span starts ``start`` columns later (those columns are left for a wider row to join
            # into, or dropped at the next remake), and each kept row moves up to its new index, never onto a row
            # still to be moved.
            begin, end = layer.appended_span[0] + start, layer.appended_span[1]
            for buffer in layer.appended_buffers:
                for index, row in enumerate(rows):
                    if row != index:
                        buffer[index, :, begin:end] = buffer[row, :, begin:end]
            layer.appended_span = begin, end
            _view(layer, len(rows))
        else:
            _remake(layer, layer.keys.shape[-2] - start,
                    [(slice(i, i + 1), layer.keys[row : row + 1, :, start:], layer.values[row : row + 1, :, start:])
                     for i, row in enumerate(rows)])


def _current(layer) -> bool:
    """Whether the layer's tensors are still the views of its buffers (not replaced since)."""
    return getattr(layer, "appended_view", None) is layer.keys


def _view(layer, rows: int) -> None:
    """Point the layer's tensors at the first ``rows`` rows of its buffers, over its span of columns."""
    (keys, values), (start, stop) = layer.appended_buffers, layer.appended_span
    layer.keys, layer.values = keys[:rows, :, start:stop], values[:rows, :, start:stop]
    layer.appended_view = layer.keys
    if layer.is_sliding:
        layer.cumulative_length = stop - start


def _remake(layer, width: int, parts, room: int = _ROOM) -> None:
    """New buffers for ``layer`` holding ``parts`` (row slice, keys, values), each right-aligned to ``width``, with
    ``room`` columns and ``_ROW_ROOM`` rows to spare."""
    rows = sum(part[0].stop - part[0].start for part in parts)
    buffers = []
    for which in (1, 2):
        like = parts[0][which]
        buffer = like.new_empty((rows + _ROW_ROOM, like.shape[1], width + room, like.shape[-1]))
        for part in parts:
            states, missing = part[which], width - part[which].shape[-2]
            buffer[part[0], :, :missing] = 0  # padding: masked, but never uninitialized memory (NaN * 0 is NaN)
            buffer[part[0], :, missing:width] = states
        buffers.append(buffer)
    layer.appended_buffers = tuple(buffers)
    layer.appended_span = 0, width
    _view(layer, rows)


def _update(layer, key_states, value_states, *args, **kwargs):
    if not layer.is_initialized:
        return type(layer).update(layer, key_states, value_states, *args, **kwargs)
    rows, new = key_states.shape[0], key_states.shape[-2]
    if not (_current(layer) and layer.appended_span[1] + new <= layer.appended_buffers[0].shape[-2]):
        _remake(layer, layer.keys.shape[-2], [(slice(0, rows), layer.keys, layer.values)], room=new + _ROOM)
    (keys, values), (start, stop) = layer.appended_buffers, layer.appended_span
    keys[:rows, :, stop : stop + new] = key_states
    values[:rows, :, stop : stop + new] = value_states
    layer.appended_span = start, stop + new
    _view(layer, rows)
    if layer.is_sliding:
        # The running batch's first column in view of this step's window: attention reads from there on.
        attend_from = getattr(layer, "attend_from", 0)
        return layer.keys[:, :, attend_from:], layer.values[:, :, attend_from:]
    return layer.keys, layer.values
