"""Would running prompt passes together raise serve's throughput on a CPU? The same prompt passes one request at a
time and as one batch, on the embedded model in fp32.

The doc_qa prompts (two demos, as ``bench.engine_throughput`` builds them) share a prefix: the system message and
the demos, which the engine's prefix cache computes once. What each request's own prompt pass computes is the part
after it (its passages and question). Here the own parts of N prompts, each cut to the length of the shortest, run
through the decoder after the shared prefix:

- one at a time: N passes of one row (the engine's way: ``lm/engine/row_prefill.py``);
- together: one pass of N rows.

Both compute the same tokens. Printed: tokens/s of each and the ratio (together ÷ one at a time), and, for scale,
the matrix product a prompt pass spends most of its time in (640 → 2048, Gemma 3 270M's MLP) at 1, 16, 100 and 800
rows, in fp32 and bf16. Whether requests under load arrive together often enough for this to matter is another
question: docs/benchmarks.md (serve) says what was found.

    python -m bench.prompt_pass_batching [--n 8] [--repeats 3] [--json FILE]
"""

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch

from bench.engine_throughput import doc_qa_workload
from bench.machine import cpu_name
from smelt.lm import lm_for_spec
from smelt.lm.engine.model_parts import decoder_of
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.lm.rendering import encode_prompt


def shared_prefix_length(prompts: list[list[int]]) -> int:
    first = prompts[0]
    return next((i for i in range(len(first)) if any(len(p) <= i or p[i] != first[i] for p in prompts)), len(first))


def best_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def prompt_passes(decoder, prefix_cache, own_parts: list[list[int]], start: int, repeats: int) -> dict:
    """Seconds for the own parts one at a time and as one batch, each after a copy of the shared prefix's cache."""

    def forward(ids: list[list[int]], cache) -> None:
        tokens = torch.tensor(ids)
        positions = torch.arange(start, start + tokens.shape[1])[None].expand(len(ids), -1)
        decoder(input_ids=tokens, position_ids=positions, past_key_values=cache, use_cache=True)

    def alone() -> float:
        seconds = 0.0
        for part in own_parts:
            cache = copy.deepcopy(prefix_cache)  # copied outside the timing
            started = time.perf_counter()
            forward([part], cache)
            seconds += time.perf_counter() - started
        return seconds

    def together() -> float:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(own_parts))
        started = time.perf_counter()
        forward(own_parts, cache)
        return time.perf_counter() - started

    with torch.inference_mode():
        alone()  # warm-up
        one_at_a_time = min(alone() for _ in range(repeats))
        batched = min(together() for _ in range(repeats))
    tokens = sum(len(part) for part in own_parts)
    return {"tokens": tokens, "one_at_a_time_s": one_at_a_time, "together_s": batched,
            "one_at_a_time_tokens_per_s": tokens / one_at_a_time, "together_tokens_per_s": tokens / batched,
            "together_x": one_at_a_time / batched}


def matrix_products(repeats: int) -> list[dict]:
    rows_out = []
    weight = torch.randn(2048, 640)
    for rows in (1, 16, 100, 800):
        row = {"rows": rows}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            x, w = torch.randn(rows, 640).to(dtype), weight.to(dtype)
            for _ in range(3):
                torch.nn.functional.linear(x, w)
            count = max(5, 2000 // rows)
            seconds = best_seconds(lambda x=x, w=w, count=count: [torch.nn.functional.linear(x, w)
                                                                  for _ in range(count)], repeats) / count
            row[f"{name}_gflops"] = 2 * rows * 640 * 2048 / seconds / 1e9
        rows_out.append(row)
    return rows_out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="prompts run together (requests in flight)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement (the best is kept)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    _, predictor, _, predictor_inputs = doc_qa_workload(max(args.n, 2), "test", None)
    resolved = lm_for_spec("gemma-3-270m", device="cpu", cache=False)
    model, tokenizer = resolved.engine.model, resolved.engine.tokenizer
    adapter = PrefillChatAdapter()
    prompts = [encode_prompt(tokenizer, adapter.format(predictor.signature, predictor.demos, example))
               for example in predictor_inputs[: args.n]]
    shared = shared_prefix_length(prompts)
    length = min(len(p) for p in prompts) - shared
    own_parts = [p[shared : shared + length] for p in prompts]
    decoder = decoder_of(model)
    from transformers import DynamicCache

    prefix_cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        decoder(input_ids=torch.tensor([prompts[0][:shared]]), past_key_values=prefix_cache, use_cache=True)

    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{args.n} doc_qa prompts: a shared prefix of {shared} tokens, then each one's own {length} tokens "
          f"(cut to the shortest); Gemma 3 270M, fp32")
    passes = prompt_passes(decoder, prefix_cache, own_parts, shared, args.repeats)
    print(f"one at a time: {passes['one_at_a_time_s']:.3f} s, {passes['one_at_a_time_tokens_per_s']:.0f} tokens/s")
    print(f"together:      {passes['together_s']:.3f} s, {passes['together_tokens_per_s']:.0f} tokens/s "
          f"({passes['together_x']:.2f}x one at a time)")
    products = matrix_products(args.repeats)
    print("640 -> 2048 matrix product, GFLOP/s:  rows   fp32   bf16")
    for row in products:
        print(f"{'':37}{row['rows']:5d} {row['fp32_gflops']:6.0f} {row['bf16_gflops']:6.0f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu_name(), "prompts": args.n, "shared_prefix": shared,
                                         "own_tokens": length, "prompt_passes": passes,
                                         "matrix_products": products}, indent=2))


if __name__ == "__main__":
    main()
