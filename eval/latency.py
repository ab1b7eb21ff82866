"""Latency of one request at a time: what a user waiting on a single answer sees.

The evaluation loop keeps several requests in flight, so its per-example latency includes waiting
for the rest of the batch and says more about throughput than about one answer. This pass runs a
few examples strictly one after another, with DSPy's response cache off so each one reaches the model.

The in-process engine keeps the key/value states of prompts it has seen (its prefix cache), and the
evaluation just sent these very examples. Timed as they are, they would skip their whole prompt pass.
The pass therefore empties that cache and sends one untimed request first (an example outside the
sample): each timed request then finds what a server that has run the program before holds (the
system message and demos) but not its own input.
"""

import statistics
import time

import dspy


def single_request_latency(program: dspy.Module, examples: list[dspy.Example], lm, count: int) -> dict:
    """Mean seconds per example over ``count`` examples spread evenly over the list, run sequentially, uncached.

    Every program being compared is timed on the same examples, so the columns of a table compare."""
    sample = spread_sample(examples, count)
    if not sample:
        return {}
    seconds = []
    cached = lm.lm.cache
    lm.lm.cache = False  # a cache hit would time the cache, not the model (DSPy reads this per call)
    engine = getattr(lm, "engine", None)
    try:
        with lm.context():
            if engine is not None:
                engine.prefix_cache.clear()
                warm_up = next((e for e in examples if all(e is not s for s in sample)), None)
                if warm_up is not None:
                    _answer(program, warm_up)
            for example in sample:
                started = time.perf_counter()
                _answer(program, example)
                seconds.append(time.perf_counter() - started)
    finally:
        lm.lm.cache = cached
    return {"single_request_latency_s": round(statistics.fmean(seconds), 3), "single_request_examples": len(seconds)}


def _answer(program: dspy.Module, example: dspy.Example) -> None:
    try:
        program(**example.inputs())
    except Exception:  # noqa: BLE001, S110 - a failed answer still spent the model's time
        pass


def spread_sample(items: list, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (all of them if there are fewer): not just the first few,
    which in a file grouped by document would all share one document."""
    if count >= len(items):
        return list(items)
    return [items[(i * len(items)) // count] for i in range(count)]
