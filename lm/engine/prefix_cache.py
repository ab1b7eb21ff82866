"""Key/value states of prompt prefixes already computed, kept across batches for later requests.

Every request of a compiled program starts with the same system message and demos (about 450 of a
doc-QA program's 750 prompt tokens), and a judge's requests share their instructions. The engine
computes such a prefix once and serves it to every later prompt that starts with the same token ids:
the idea of vLLM's automatic prefix caching and SGLang's radix cache.

The cache is a radix tree over token ids. Each node holds the key/value states of its own run of
tokens for every layer, so prompts that share a prefix share its memory. Causal attention makes the
states of a prompt's first n tokens depend on those tokens alone, so a prompt that shares only part
of a node's run still reuses that part. Memory is bounded: ``evict`` drops the least recently used
leaves until the cache fits ``max_bytes``. States of sliding-window layers are kept whole, so a hit
of any length can rebuild them.

A cache serves one model with one adapter in one dtype: the engine that owns it owns that model.
"""

import itertools
import os
import threading
from dataclasses import dataclass, field

from smelt.errors import SmeltError

# Per layer: (keys, values), each (1, kv_heads, tokens, head_dim).
LayerStates = list[tuple["torch.Tensor", "torch.Tensor"]]  # noqa: F821 - torch is imported lazily


DEFAULT_BUDGET_MB = 1024


def prefix_cache_budget() -> int:
    """Bytes the prefix cache may hold: ``SMELT_PREFIX_CACHE_MB`` (0 keeps prefixes only while one admission
    of requests is prefilled), else 1 GiB: about 29,000 tokens of Gemma 3 270M in fp32, 9,000 of a
    Llama-3.2-3B-shaped model in bf16."""
    text = os.environ.get("SMELT_PREFIX_CACHE_MB", str(DEFAULT_BUDGET_MB))
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1
    if megabytes < 0:
        raise SmeltError(f"SMELT_PREFIX_CACHE_MB={text}: give the prefix cache's size in MiB (0 or more)")
    return int(megabytes * 2**20)


@dataclass(eq=False)
class _Node:
    tokens: tuple[int, ...]
    states: LayerStates
    parent: "_Node | None"
    children: dict[int, "_Node"] = field(default_factory=dict)
    last_used: int = 0

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.states)


@dataclass
class PrefixCacheStats:
    prompt_tokens: int = 0  # tokens of every prompt looked up
    reused_tokens: int = 0  # of those, tokens whose states came from the cache

    @property
    def hit_rate(self) -> float:
        return self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


class PrefixCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.stats = PrefixCacheStats()
        self._root = _Node((), [], None)
        self._bytes = 0
        self._clock = itertools.count(1)
        self._lock = threading.Lock()  # the engine's worker uses the cache; clear() and stats may come from others

    @property
    def nbytes(self) -> int:
        return self._bytes

    def longest_prefix(self, ids: list[int]) -> tuple[int, LayerStates | None]:
        """How many leading tokens of ``ids`` the cache holds, and their states (new tensors); (0, None) on a miss."""
        import torch

        with self._lock:
            self.stats.prompt_tokens += len(ids)
            pieces: list[LayerStates] = []
            matched = 0
            for node, shared in self._path(ids):
                pieces.append([(k[:, :, :shared], v[:, :, :shared]) for k, v in node.states])
                matched += shared
            self.stats.reused_tokens += matched
            if not matched:
                return 0, None
            layers = zip(*pieces, strict=True)
            return matched, [(torch.cat([k for k, _ in layer], dim=-2), torch.cat([v for _, v in layer], dim=-2))
                             for layer in layers]

    def insert(self, ids: list[int], states: LayerStates) -> None:
        """Remember the states of ``ids`` (per layer, covering exactly those tokens); shared parts are stored once."""
        with self._lock:
            matched, node = 0, self._root
            for child, shared in self._path(ids):
                node = self._split(child, shared) if shared < len(child.tokens) else child
                matched += shared
            if matched < len(ids):
                # A copy, not a view: a view would keep the caller's whole tensor alive after eviction.
                rest = [(k[:, :, matched:].clone(), v[:, :, matched:].clone()) for k, v in states]
                leaf = _Node(tuple(ids[matched:]), rest, node, last_used=next(self._clock))
                node.children[leaf.tokens[0]] = leaf
                self._bytes += leaf.nbytes

    def evict(self) -> None:
        """Drop least recently used leaves until the cache fits its budget."""
        with self._lock:
            while self._bytes > self.max_bytes:
                leaves = [node for node in self._nodes() if not node.children]
                if not leaves:
                    break
                oldest = min(leaves, key=lambda node: node.last_used)
                del oldest.parent.children[oldest.tokens[0]]
                self._bytes -= oldest.nbytes

    def clear(self) -> None:
        with self._lock:
            self._root = _Node((), [], None)
            self._bytes = 0

    def _path(self, ids: list[int]):
        """The nodes along ``ids`` from the root, each with how many of its tokens ``ids`` shares (all of them but
        perhaps in the last), marked as used. Call holding the lock."""
        matched, node = 0, self._root
        while matched < len(ids):
            child = node.children.get(ids[matched])
            if child is None:
                return
            shared = _shared_length(child.tokens, ids, matched)
            whole = shared == len(child.tokens)  # read before the caller may split the node
            child.last_used = next(self._clock)
            yield child, shared
            if not whole:
                return
            matched += shared
            node = child

    def _split(self, node: _Node, at: int) -> _Node:
        """Cut ``node``'s run after ``at`` tokens; the new upper node, holding the first part, is returned."""
        upper = _Node(node.tokens[:at], [(k[:, :, :at].clone(), v[:, :, :at].clone()) for k, v in node.states],
                      node.parent, last_used=node.last_used)
        node.parent.children[upper.tokens[0]] = upper
        node.tokens = node.tokens[at:]
        node.states = [(k[:, :, at:].clone(), v[:, :, at:].clone()) for k, v in node.states]
        node.parent = upper
        upper.children[node.tokens[0]] = node
        return upper

    def _nodes(self):
        stack = list(self._root.children.values())
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())


def _shared_length(run: tuple[int, ...], ids: list[int], start: int) -> int:
    """How many tokens of ``run`` equal ``ids`` from ``start`` on."""
    limit = min(len(run), len(ids) - start)
    return next((i for i in range(limit) if run[i] != ids[start + i]), limit)
