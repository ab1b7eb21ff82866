"""Attention of a decode step with drafts: the query heads folded onto their key/value head, against transformers' SDPA
attention, which copies each key/value head once per query head (``repeat_kv``) when a mask is given.

Shapes as the embedded model's (Gemma 3 270M: 4 query heads, 1 key/value head of 256) in a continuous-batching step:
``rows`` requests, ``tokens`` fed each (the next token and drafts), ``columns`` cached, a boolean mask. In one
process, each pair timed back to back; the anchor is transformers' ``sdpa_attention_forward``, the ratio its time over
``packed_sdpa_attention``'s (above 1: folding is faster). The largest difference between the two outputs is printed
too. The last rows are prompt passes, which are not folded (the function hands them to transformers).

    python -m bench.packed_attention [--repeats 50]
"""

import argparse
from types import SimpleNamespace

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from bench.machine import cpu_name
from bench.timing import seconds_per_call
from smelt.lm.engine.packed_attention import packed_sdpa_attention

HEADS, KV_HEADS, WIDTH = 4, 1, 256
SCALE = WIDTH**-0.5
SHAPES = [(1, 8, 700), (1, 16, 700), (4, 2, 700), (8, 2, 300), (8, 2, 700), (8, 3, 700), (8, 2, 1400),
          (16, 2, 700), (8, 2, 4000), (1, 120, 620), (1, 300, 800)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="calls timed per shape and function")
    args = parser.parse_args(argv)
    module = SimpleNamespace(num_key_value_groups=HEADS // KV_HEADS, training=False, is_causal=True)
    generator = torch.Generator().manual_seed(0)
    print(f"cpu: {cpu_name()}, torch threads: {torch.get_num_threads()}")
    print("rows  tokens  columns   transformers ms   folded ms   x faster   largest difference")
    for rows, tokens, columns in SHAPES:
        query = torch.randn(rows, HEADS, tokens, WIDTH, generator=generator)
        key, value = (torch.randn(rows, KV_HEADS, columns, WIDTH, generator=generator) for _ in range(2))
        mask = torch.rand(rows, 1, tokens, columns, generator=generator) > 0.1
        inputs = (module, query, key, value, mask)
        anchor_s = seconds_per_call(lambda: sdpa_attention_forward(*inputs, scaling=SCALE), args.repeats)  # noqa: B023
        folded_s = seconds_per_call(lambda: packed_sdpa_attention(*inputs, scaling=SCALE), args.repeats)  # noqa: B023
        difference = float((sdpa_attention_forward(*inputs, scaling=SCALE)[0]
                            - packed_sdpa_attention(*inputs, scaling=SCALE)[0]).abs().max())
        print(f"{rows:4d}  {tokens:6d}  {columns:7d}   {1000 * anchor_s:15.3f}   {1000 * folded_s:9.3f}   "
              f"{anchor_s / folded_s:8.2f}   {difference:.1e}")


if __name__ == "__main__":
    main()
