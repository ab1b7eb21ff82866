"""Appending decode steps in place hands attention exactly what transformers' own cache layers would."""

from types import SimpleNamespace

import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from smelt.lm.appending_cache import append_in_place


def layers():
    return [DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=6)]


def test_decode_steps_see_the_same_states_as_transformers_layers_across_buffer_remakes_and_row_changes():
    generator = torch.Generator().manual_seed(0)
    reference, appending = layers(), layers()
    append_in_place(SimpleNamespace(layers=appending))

    def states(rows, columns):
        return [torch.randn(rows, 2, columns, 4, generator=generator) for _ in ("keys", "values")]

    def step(rows, columns=1):
        keys, values = states(rows, columns)
        for ours, theirs in zip(appending, reference, strict=True):
            got, expected = ours.update(keys, values), theirs.update(keys, values)
            assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))  # what attention sees
            assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)  # what is kept
            if ours.is_sliding:
                assert ours.cumulative_length == theirs.cumulative_length

    step(3, columns=4)  # a prompt pass: transformers' own update
    for _ in range(70):  # past the sliding window and past a buffer's spare room
        step(3)
    for layer in (*appending, *reference):  # a row leaves: the running batch replaces the tensors
        layer.batch_select_indices(torch.tensor([0, 2]))
    for _ in range(5):
        step(2)
