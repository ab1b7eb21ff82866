"""Cache layers that append each decode step's keys and values in place, and can take back the last columns.

transformers' ``DynamicLayer`` concatenates the whole cache with every step's new columns
(``torch.cat``), and its sliding-window layer copies its window the same way. With eight rows of 700
tokens that is about 165 MB copied per step for Gemma 3 270M: a third of a CPU decode step. Here a
layer writes each step's columns into a buffer with room to spare and hands attention views of it.
A buffer is remade (one copy) only when it is full, or when the running batch has replaced the
layer's tensors (a row joined or left): the views it handed out are then no longer the layer's.

In the running batch every layer keeps all its columns, sliding-window layers included: the batch
passes attention masks that apply the window by position (``running_batch``), since a step that
verifies drafted tokens leaves columns that no row uses and a window counted in columns would be wrong.
``drop_last`` takes back a step's trailing columns that no row kept.

When rows join or leave, ``join_rows`` and ``keep_rows`` write the batch's new tensors straight into fresh
buffers with room, one copy of the cache, where padding, concatenating and remaking the buffer at the
next step would copy it three times (about 260 MB each for eight rows of 900 tokens of Gemma 3 270M).
"""

from types import MethodType

_ROOM = 64  # spare columns per (re)made buffer: one copy every 64 columns instead of one per step


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
        layer.keys, layer.values = layer.keys[:, :, : -columns], layer.values[:, :, : -columns]
        layer.appended_view = layer.keys
        if layer.is_sliding:
            layer.cumulative_length = layer.keys.shape[-2]


def join_rows(cache, other, width: int) -> None:
    """Put the rows of ``other`` (a cache with the same layers) below those of ``cache``, both right-aligned to
    ``width`` columns (zeros to the left of a shorter one)."""
    for ours, theirs in zip(cache.layers, other.layers, strict=True):
        rows = ours.keys.shape[0]
        _remake(ours, width, [(slice(0, rows), ours.keys, ours.values),
                              (slice(rows, rows + theirs.keys.shape[0]), theirs.keys, theirs.values)])


def keep_rows(cache, rows: list[int], start: int) -> None:
    """Keep only the rows ``rows`` of every layer (in that order), from column ``start`` on."""
    for layer in cache.layers:
        _remake(layer, layer.keys.shape[-2] - start,
                [(slice(i, i + 1), layer.keys[row : row + 1, :, start:], layer.values[row : row + 1, :, start:])
                 for i, row in enumerate(rows)])


def _remake(layer, width: int, parts) -> None:
    """New buffers for ``layer`` holding ``parts`` (row slice, keys, values), each right-aligned to ``width``."""
    buffers = []
    for which in (1, 2):
        like = parts[0][which]
        rows = sum(part[0].stop - part[0].start for part in parts)
        buffer = like.new_empty((rows, like.shape[1], width + _ROOM, like.shape[-1]))
        for part in parts:
            states, missing = part[which], width - part[which].shape[-2]
            buffer[part[0], :, :missing] = 0  # padding: masked, but never uninitialized memory (NaN * 0 is NaN)
            buffer[part[0], :, missing:width] = states
        buffers.append(buffer)
    layer.appended_buffers = tuple(buffers)
    layer.appended_span = 0, width
    layer.keys, layer.values = buffers[0][:, :, :width], buffers[1][:, :, :width]
    layer.appended_view = layer.keys
    if layer.is_sliding:
        layer.cumulative_length = width


def _update(layer, key_states, value_states, *args, **kwargs):
    if not layer.is_initialized:
        return type(layer).update(layer, key_states, value_states, *args, **kwargs)
    new = key_states.shape[-2]
    keys, values = _buffers(layer, new)
    start, stop = layer.appended_span
    keys[:, :, stop : stop + new] = key_states
    values[:, :, stop : stop + new] = value_states
    stop += new
    layer.appended_span = start, stop
    layer.keys, layer.values = keys[:, :, start:stop], values[:, :, start:stop]
    layer.appended_view = layer.keys
    if layer.is_sliding:
        layer.cumulative_length = stop - start
        # The running batch's first column in view of this step's window: attention reads from there on.
        attend_from = getattr(layer, "attend_from", 0)
        return layer.keys[:, :, attend_from:], layer.values[:, :, attend_from:]
    return layer.keys, layer.values


def _buffers(layer, new: int):
    """The layer's buffers, remade from its current states if they were replaced or have no room for ``new``."""
    current = getattr(layer, "appended_view", None) is layer.keys
    if current and layer.appended_span[1] + new <= layer.appended_buffers[0].shape[-2]:
        return layer.appended_buffers
    length = layer.keys.shape[-2]
    buffers = []
    for states in (layer.keys, layer.values):
        buffer = states.new_empty((*states.shape[:-2], length + new + _ROOM, states.shape[-1]))
        buffer[:, :, :length] = states
        buffers.append(buffer)
    layer.appended_buffers = tuple(buffers)
    layer.appended_span = 0, length
    return layer.appended_buffers
