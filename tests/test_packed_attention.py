"""Folding a grouped-query decode step's heads computes the same attention as transformers' SDPA, and everything
else is transformers' own."""

from types import SimpleNamespace

import pytest
import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from smelt.lm.engine.packed_attention import packed_sdpa_attention, register_packed_attention


def _inputs(rows, heads, kv_heads, tokens, columns, seed=0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(rows, heads, tokens, 16, generator=generator)
    key, value = (torch.randn(rows, kv_heads, columns, 16, generator=generator) for _ in range(2))
    mask = torch.rand(rows, 1, tokens, columns, generator=generator) > 0.3
    mask[..., -1] = True  # every query sees at least one column
    return query, key, value, mask


@pytest.mark.parametrize(("rows", "heads", "kv_heads", "tokens", "columns"),
                         [(8, 4, 1, 2, 50), (3, 8, 2, 5, 33), (2, 4, 1, 16, 70)])
def test_a_folded_step_is_the_same_attention_per_head_and_token(rows, heads, kv_heads, tokens, columns):
    module = SimpleNamespace(num_key_value_groups=heads // kv_heads, training=False)
    query, key, value, mask = _inputs(rows, heads, kv_heads, tokens, columns)
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    folded, _ = packed_sdpa_attention(module, query, key, value, mask, scaling=0.25)
    assert folded.shape == expected.shape == (rows, tokens, heads, 16)
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-6)
    # each token's output comes from its own query: changing the last token's changes its output alone
    query[:, :, -1] += 1.0
    changed, _ = packed_sdpa_attention(module, query, key, value, mask, scaling=0.25)
    torch.testing.assert_close(changed[:, :-1], folded[:, :-1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(changed[:, -1], folded[:, -1])


def test_what_is_not_a_short_masked_grouped_query_step_goes_to_transformers_unchanged():
    query, key, value, mask = _inputs(2, 4, 1, 40, 60)
    cases = [
        (SimpleNamespace(num_key_value_groups=4, training=False), query, mask),  # a prompt pass: 40 tokens
        (SimpleNamespace(num_key_value_groups=4, training=False), query[:1, :, :2], mask[:1, :, :2]),  # one row
        (SimpleNamespace(num_key_value_groups=4, training=True), query[:, :, :2], mask[:, :, :2]),  # training
        (SimpleNamespace(num_key_value_groups=4, training=False), query[:, :, :2], None),  # no mask
        (SimpleNamespace(num_key_value_groups=1, training=False), query[:, :1, :2], mask[:, :, :2]),  # no groups
    ]
    for module, q, m in cases:
        expected, _ = sdpa_attention_forward(module, q, key, value, m, scaling=0.25, is_causal=m is None)
        got, _ = packed_sdpa_attention(module, q, key, value, m, scaling=0.25, is_causal=m is None)
        assert torch.equal(got, expected)


def test_registering_replaces_sdpa_once():
    register_packed_attention()
    register_packed_attention()
    assert AttentionInterface._global_mapping["sdpa"] is packed_sdpa_attention
