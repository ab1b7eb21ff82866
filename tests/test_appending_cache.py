"""Appending decode steps in place keeps exactly the columns a concatenating cache would, and takes back the last."""

from types import SimpleNamespace

import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from smelt.lm.engine.appending_cache import append_in_place, drop_last, join_rows, keep_rows


def test_steps_of_one_or_more_columns_keep_every_column_across_buffer_remakes_row_changes_and_rollbacks():
    generator = torch.Generator().manual_seed(0)
    appending = [DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=6)]
    append_in_place(SimpleNamespace(layers=appending))
    kept = None  # what a plain concatenation of every step's columns holds: (keys, values)

    def step(rows, columns=1):
        nonlocal kept
        keys, values = (torch.randn(rows, 2, columns, 4, generator=generator) for _ in range(2))
        kept = (keys, values) if kept is None else (torch.cat([kept[0], keys], -2), torch.cat([kept[1], values], -2))
        for layer in appending:
            seen = layer.update(keys, values)
            assert torch.equal(seen[0], kept[0]) and torch.equal(seen[1], kept[1])  # what attention sees: every column
            assert torch.equal(layer.keys, kept[0]) and torch.equal(layer.values, kept[1])  # the window is the masks'
            if layer.is_sliding:
                assert layer.cumulative_length == kept[0].shape[-2]

    step(3, columns=4)  # a prompt pass
    for columns in [1, 3, 1, 8] * 12:  # past the sliding window and past several buffers' spare room
        step(3, columns)
    drop_last(SimpleNamespace(layers=appending), 5)  # a step's drafted columns that no row kept
    kept = (kept[0][:, :, :-5], kept[1][:, :, :-5])
    assert all(torch.equal(layer.keys, kept[0]) for layer in appending)
    step(3, 2)  # the next step writes where the dropped columns were
    for layer in appending:  # a row leaves: the running batch replaces the tensors
        layer.batch_select_indices(torch.tensor([0, 2]))
    kept = (kept[0][[0, 2]], kept[1][[0, 2]])
    for _ in range(5):
        step(2)


def test_rows_join_and_leave_in_one_copy_into_buffers_the_next_step_appends_to():
    generator = torch.Generator().manual_seed(1)

    def layers(rows, columns):
        made = [DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=6)]
        made[1].activate_past_recording()  # as a prompt pass leaves it: every column, not just the window
        keys, values = (torch.randn(rows, 2, columns, 4, generator=generator) for _ in range(2))
        for layer in made:
            layer.update(keys, values)
        return SimpleNamespace(layers=made), keys, values

    batch, keys, values = layers(2, 5)
    append_in_place(batch)
    joining, their_keys, their_values = layers(1, 9)  # longer than the batch: the batch is padded on the left
    join_rows(batch, joining, 9)
    padded = torch.cat([torch.zeros(2, 2, 4, 4), keys], -2)
    expected = (torch.cat([padded, their_keys]), torch.cat([torch.cat([torch.zeros(2, 2, 4, 4), values], -2),
                                                            their_values]))
    for layer in batch.layers:
        assert torch.equal(layer.keys, expected[0]) and torch.equal(layer.values, expected[1])  # zeros, not garbage
        if layer.is_sliding:
            assert layer.cumulative_length == 9

    step_keys, step_values = (torch.randn(3, 2, 1, 4, generator=generator) for _ in range(2))
    buffers = [layer.appended_buffers for layer in batch.layers]
    for layer, made in zip(batch.layers, buffers, strict=True):
        seen = layer.update(step_keys, step_values)
        assert layer.appended_buffers is made  # appended in place: the join left room
        assert torch.equal(seen[0], torch.cat([expected[0], step_keys], -2))
    expected = (torch.cat([expected[0], step_keys], -2), torch.cat([expected[1], step_values], -2))

    keep_rows(batch, [2, 0], 3)  # the first row leaves and the rows swap; the first three columns go
    for layer in batch.layers:
        assert torch.equal(layer.keys, expected[0][[2, 0], :, 3:])
        assert torch.equal(layer.values, expected[1][[2, 0], :, 3:])
        made = layer.appended_buffers
        layer.update(step_keys[:2], step_values[:2])
        assert layer.appended_buffers is made
        assert torch.equal(layer.keys[:, :, -1:], step_keys[:2])
    expected = tuple(torch.cat([states[[2, 0], :, 3:], new[:2]], -2)
                     for states, new in ((expected[0], step_keys), (expected[1], step_values)))

    # A shorter row joins where the buffers have a spare row: written alone, into the same buffers.
    buffers = [layer.appended_buffers for layer in batch.layers]
    joining, their_keys, their_values = layers(1, 4)
    join_rows(batch, joining, 8)
    expected = tuple(torch.cat([states, torch.cat([torch.zeros(1, 2, 4, 4), theirs], -2)])
                     for states, theirs in ((expected[0], their_keys), (expected[1], their_values)))
    for layer, made in zip(batch.layers, buffers, strict=True):
        assert layer.appended_buffers is made
        assert torch.equal(layer.keys, expected[0]) and torch.equal(layer.values, expected[1])

    keep_rows(batch, [0, 2], 0)  # the middle row leaves: the last moves up, in place
    for layer, made in zip(batch.layers, buffers, strict=True):
        assert layer.appended_buffers is made
        assert torch.equal(layer.keys, expected[0][[0, 2]]) and torch.equal(layer.values, expected[1][[0, 2]])
        if layer.is_sliding:
            assert layer.cumulative_length == 8

    # The first row leaves and no row uses the first two columns any more: in place, the columns left unused...
    expected = tuple(states[[0, 2]] for states in expected)
    keep_rows(batch, [1], 2)
    expected = tuple(states[[1], :, 2:] for states in expected)
    for layer, made in zip(batch.layers, buffers, strict=True):
        assert layer.appended_buffers is made
        assert torch.equal(layer.keys, expected[0]) and torch.equal(layer.values, expected[1])
    # ...for a row one column wider than the batch to join into, still without a copy.
    joining, their_keys, their_values = layers(1, 7)
    join_rows(batch, joining, 7)
    expected = tuple(torch.cat([torch.cat([torch.zeros(1, 2, 1, 4), states], -2), theirs])
                     for states, theirs in ((expected[0], their_keys), (expected[1], their_values)))
    for layer, made in zip(batch.layers, buffers, strict=True):
        assert layer.appended_buffers is made
        assert torch.equal(layer.keys, expected[0]) and torch.equal(layer.values, expected[1])  # zeros, not stale
        if layer.is_sliding:
            assert layer.cumulative_length == 7
        seen = layer.update(step_keys[:2], step_values[:2])
        assert torch.equal(seen[0], torch.cat([expected[0], step_keys[:2]], -2))
    # Wider than the room on the left: written once into fresh buffers.
    joining, their_keys, their_values = layers(1, 12)
    join_rows(batch, joining, 12)
    for layer, made in zip(batch.layers, buffers, strict=True):
        assert layer.appended_buffers is not made
        assert torch.equal(layer.keys[:2, :, 4:], torch.cat([expected[0], step_keys[:2]], -2))
        assert torch.equal(layer.keys[:2, :, :4], torch.zeros(2, 2, 4, 4))
        assert torch.equal(layer.keys[2:], their_keys)
