"""The prefix cache's radix tree on small tensors: longest-prefix lookups, shared storage, LRU eviction, the budget."""

import pytest
import torch

from smelt.errors import SmeltError
from smelt.lm.engine.prefix_cache import PrefixCache, prefix_cache_budget

LAYERS = 2


def states_for(ids: list[int]):
    """Per layer (keys, values) whose values encode the token and the layer, so a lookup can be checked exactly."""
    column = torch.tensor(ids, dtype=torch.float32)[None, None, :, None]  # (1, heads=1, tokens, dim=1)
    return [(column + 1000 * layer, -column - 1000 * layer) for layer in range(LAYERS)]


def assert_states(states, ids):
    for (keys, values), (want_keys, want_values) in zip(states, states_for(ids), strict=True):
        assert torch.equal(keys, want_keys) and torch.equal(values, want_values)


def test_a_miss_then_the_longest_cached_prefix():
    cache = PrefixCache(max_bytes=10**6)
    assert cache.longest_prefix([1, 2, 3]) == (0, None)
    cache.insert([1, 2, 3, 4, 5], states_for([1, 2, 3, 4, 5]))
    length, states = cache.longest_prefix([1, 2, 3, 9])  # part of a cached run is served too
    assert length == 3
    assert_states(states, [1, 2, 3])
    length, states = cache.longest_prefix([1, 2, 3, 4, 5, 6, 7])
    assert length == 5
    assert_states(states, [1, 2, 3, 4, 5])
    assert cache.stats.prompt_tokens == 3 + 4 + 7 and cache.stats.reused_tokens == 3 + 5


def test_branches_share_their_common_prefix_once():
    cache = PrefixCache(max_bytes=10**6)
    cache.insert([1, 2, 3, 4], states_for([1, 2, 3, 4]))
    one = cache.nbytes
    cache.insert([1, 2, 7, 8, 9], states_for([1, 2, 7, 8, 9]))
    assert cache.nbytes == one + one // 4 * 3  # only 7, 8, 9 are new
    for ids in ([1, 2, 3, 4], [1, 2, 7, 8, 9]):
        length, states = cache.longest_prefix(ids)
        assert length == len(ids)
        assert_states(states, ids)
    length, states = cache.longest_prefix([1, 2, 5])
    assert length == 2
    assert_states(states, [1, 2])


def test_least_recently_used_leaves_go_first():
    per_token = 2 * LAYERS * 4  # keys and values, float32, one head of one dimension
    cache = PrefixCache(max_bytes=per_token * 8)
    cache.insert([1, 2, 3, 4], states_for([1, 2, 3, 4]))
    cache.insert([5, 6, 7, 8], states_for([5, 6, 7, 8]))
    cache.longest_prefix([1, 2, 3, 4])  # [5..8] is now the least recently used
    cache.insert([9, 10, 11, 12], states_for([9, 10, 11, 12]))
    cache.evict()
    assert cache.nbytes <= cache.max_bytes
    assert cache.longest_prefix([5, 6, 7, 8])[0] == 0
    assert cache.longest_prefix([1, 2, 3, 4])[0] == 4
    assert cache.longest_prefix([9, 10, 11, 12])[0] == 4


def test_a_zero_budget_keeps_nothing_after_eviction():
    cache = PrefixCache(max_bytes=0)
    cache.insert([1, 2, 3], states_for([1, 2, 3]))
    assert cache.longest_prefix([1, 2, 3])[0] == 3  # until evict(): the requests prefilled together share it
    cache.evict()
    assert cache.nbytes == 0 and cache.longest_prefix([1, 2, 3])[0] == 0


def test_stored_states_are_copies_not_views_of_the_callers_tensors():
    cache = PrefixCache(max_bytes=10**6)
    states = states_for([1, 2, 3])
    cache.insert([1, 2, 3], states)
    states[0][0].zero_()
    _, served = cache.longest_prefix([1, 2, 3])
    assert_states(served, [1, 2, 3])


def test_the_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SMELT_PREFIX_CACHE_MB", "64")
    assert prefix_cache_budget() == 64 * 2**20
    monkeypatch.setenv("SMELT_PREFIX_CACHE_MB", "lots")
    with pytest.raises(SmeltError, match="SMELT_PREFIX_CACHE_MB=lots"):
        prefix_cache_budget()
