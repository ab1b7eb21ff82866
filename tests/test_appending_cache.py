"""Appending decode steps in place keeps exactly the columns a concatenating cache would, and takes back the last."""

from types import SimpleNamespace

import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from smelt.lm.appending_cache import append_in_place, drop_last


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
