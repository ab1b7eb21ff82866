"""Timing a call the benchmarks repeat."""

import time


def seconds_per_call(function, repeats: int) -> float:
    """Mean seconds of ``function()`` over ``repeats`` calls, after one untimed call (warm caches, lazy setup)."""
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats
