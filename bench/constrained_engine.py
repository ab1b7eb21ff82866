"""The in-process engine with and without answer constraints: the same prompts, the same model, the same process.

For each task, its uncompiled program is called from ``--threads`` DSPy threads on ``--n`` examples (DSPy's cache
off, the prefix cache emptied first), once with ``constrain=false`` (the anchor) and once with ``constrain=true``:
examples/s, generated tokens, tokens/s, decode steps and the worker's milliseconds per decode step (where the masks
are computed and applied), the answers cut at ``max_tokens``, and for a task with labels the answers outside them.
doc_qa's answers are free text (one sentence); inquiry_routing's are one of six labels. Before the passes, one
constrained call per task is timed apart: the process's first one builds llguidance's token table.

    python -m bench.constrained_engine [--n 16] [--threads 8] [--device auto]
"""

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.machine import device_name
from smelt.lm import lm_for_spec
from smelt.programs.registry import get_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"doc_qa": "doc_qa", "inquiry_routing": str(ROOT / "examples" / "inquiry_routing.toml")}


def inputs_of(task, n: int) -> list[dict]:
    data = task.shipped_data()
    return [{name: example[name] for name in task.input_fields} for example in (data.dev + data.test)[:n]]


def one_pass(resolved, program, inputs: list[dict], threads: int) -> dict:
    """The program on ``inputs`` from a thread pool, with the engine's counters and the answers read around it."""
    engine = resolved.engine
    engine.prefix_cache.clear()
    steps, decode_s, history = engine.steps, engine.decode_step_seconds, len(resolved.lm.history)

    def call(example: dict) -> str | None:
        with resolved.context():
            try:
                return str(next(iter(program(**example).values())))
            except Exception:  # noqa: BLE001 - a parse failure counts as an answer missing
                return None

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(call, inputs))
    seconds = time.perf_counter() - started
    usage = [entry["usage"]["completion_tokens"] for entry in resolved.lm.history[history:]]
    cap = next(iter(program.named_predictors()))[1].config["max_tokens"]
    return {"seconds": seconds, "tokens": sum(usage), "steps": engine.steps - steps, "answers": answers,
            "decode_s": engine.decode_step_seconds - decode_s, "cut": sum(tokens >= cap for tokens in usage)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="examples per task (dev, then test)")
    parser.add_argument("--threads", type=int, default=8, help="DSPy threads, as compile's --threads")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    resolved = lm_for_spec("gemma-3-270m", device=args.device, cache=False)
    print(f"{device_name(resolved.engine.device)}, {resolved.engine.dtype}; {args.n} examples per task, "
          f"{args.threads} threads, DSPy cache off; ratio: constrained against unconstrained")
    for name, spec in TASKS.items():
        task = get_task(spec)
        inputs = inputs_of(task, args.n)
        free, constrained = task.program({"constrain": False}), task.program({"constrain": True})
        started = time.perf_counter()
        with resolved.context():
            constrained(**inputs[0])  # the first constrained call (in the process: llguidance's token table)
        first = time.perf_counter() - started
        with resolved.context():
            free(**inputs[0])
        passes = {"unconstrained": one_pass(resolved, free, inputs, args.threads),
                  "constrained": one_pass(resolved, constrained, inputs, args.threads)}
        print(f"\n{name} (first constrained call {first:.1f} s)")
        print(f"{'':15}{'examples/s':>11}{'tokens':>8}{'tokens/s':>10}{'steps':>7}{'ms/step':>9}{'cut':>5}"
              f"{'outside labels' if task.answer_labels else '':>16}")
        for label, result in passes.items():
            outside = (sum(answer not in task.answer_labels for answer in result["answers"])
                       if task.answer_labels else "")
            print(f"{label:15}{len(inputs) / result['seconds']:>11.3f}{result['tokens']:>8}"
                  f"{result['tokens'] / result['seconds']:>10.1f}{result['steps']:>7}"
                  f"{1e3 * result['decode_s'] / max(1, result['steps']):>9.1f}{result['cut']:>5}{outside!s:>16}")
        free_pass, held = passes["unconstrained"], passes["constrained"]
        per_step = {label: result["decode_s"] / max(1, result["steps"]) for label, result in passes.items()}
        print(f"constrained against unconstrained: examples/s {free_pass['seconds'] / held['seconds']:.2f}x, "
              f"ms per decode step {per_step['constrained'] / per_step['unconstrained']:.2f}x")

if __name__ == "__main__":
    main()
