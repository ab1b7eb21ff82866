"""Where requests meet the model: a pool of --threads worker threads, so that concurrent requests call the program
at the same time and the in-process engine decodes them in one batch (``smelt.lm.engine``: continuous batching and
a prefix cache), not one after another behind a lock. Each request waits at most --timeout; once the server is
told to stop, new requests are refused (503) while those in flight finish. A streamed reply takes each of its
pieces from a pool thread in turn, under the same rules."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from smelt.lifecycle.reloaded_run import LoadedRun
from smelt.lm.call_scope import CallScope
from smelt.serving.prediction import RequestFailed

T = TypeVar("T")
_END = object()  # what next() gives at the end of a stream


class ServedProgram:
    """The loaded run, the worker pool, and counts of what was served."""

    def __init__(self, loaded: LoadedRun, *, threads: int, timeout: float):
        self.loaded = loaded
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="smelt-serve")
        self.draining = False
        self._lock = threading.Lock()
        self.in_flight = 0
        self.answered = 0
        self.failed = 0
        self.completion_tokens = 0

    async def call(self, work: Callable[[], T]) -> T:
        """``work()`` on a pool thread, within --timeout (queueing for a thread included)."""
        self._enter()
        scope, failed = CallScope(), True
        try:
            result = await self._on_pool(scope, time.monotonic() + self.timeout, work)
            failed = False
        finally:
            self._leave(failed, _completion_tokens(result) if not failed else 0)
        return result

    async def open_stream(self, start: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """The items of ``start()``, each taken on a pool thread, the whole within --timeout. ``start()`` and the first
        item run before this returns, so a request that fails at once is still an error reply. A stream that ends
        early (its client went away, --timeout, an error) cancels its model calls."""
        self._enter()
        scope, deadline = CallScope(), time.monotonic() + self.timeout
        try:
            iterator = await self._on_pool(scope, deadline, start)
            first = await self._on_pool(scope, deadline, lambda: next(iterator, _END))
        except BaseException:
            scope.cancel()
            self._leave(failed=True)
            raise
        return self._rest_of_stream(scope, deadline, iterator, first)

    async def _rest_of_stream(self, scope: CallScope, deadline: float, iterator: Iterator[T], item) -> AsyncIterator[T]:
        failed = True
        try:
            while item is not _END:
                yield item
                item = await self._on_pool(scope, deadline, lambda: next(iterator, _END))
            failed = False
        finally:
            if failed:
                scope.cancel()
            self._leave(failed)

    def count_tokens(self, completion_tokens: int) -> None:
        """Add a streamed reply's generated tokens to the counts (``call`` counts its own)."""
        with self._lock:
            self.completion_tokens += completion_tokens

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
        if self.draining:
            self._leave(failed=True)
            raise RequestFailed(503, "the server is shutting down; send the request to another instance or retry once "
                                     "it is back")

    def _leave(self, failed: bool, completion_tokens: int = 0) -> None:
        with self._lock:
            self.in_flight -= 1
            if failed:
                self.failed += 1
            else:
                self.answered += 1
                self.completion_tokens += completion_tokens

    async def _on_pool(self, scope: CallScope, deadline: float, work: Callable[[], T]) -> T:
        """``work()`` on a pool thread inside ``scope``, by ``deadline`` (time.monotonic); past it a 504, and the
        scope is cancelled: the engine drops its model calls at its next step."""
        future = self.pool.submit(_within, scope, work)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            future.cancel()  # still queued: never run
            scope.cancel()  # already running: the engine drops its model calls at its next step
            raise RequestFailed(504, f"no answer within {self.timeout:g} s (--timeout); the server is busy or the "
                                     "inputs are long") from None

    def stop_accepting(self) -> None:
        """From now on every new request is a 503; those in flight go on."""
        self.draining = True

    def close(self) -> None:
        """Wait for the pool's running calls, drop the queued ones."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    def stats(self) -> dict:
        """What was served, and how the engine batched it: ``decode_steps`` grows by one per step of the whole
        batch, so requests answered together add fewer steps than their tokens; ``prompt_pass_s`` and
        ``decode_step_s``: the engine's seconds in each; the share of prompt tokens its prefix cache served (in-process
        models only)."""
        engine = self.loaded.lm.engine
        with self._lock:
            counts = {"in_flight": self.in_flight, "answered": self.answered, "failed": self.failed,
                      "completion_tokens": self.completion_tokens}
        if engine is not None:
            counts.update(decode_steps=engine.steps, peak_batch=engine.peak_rows,
                          prompt_pass_s=round(engine.prompt_pass_seconds, 3),
                          decode_step_s=round(engine.decode_step_seconds, 3),
                          prefix_cache_hit_rate=round(engine.prefix_cache.stats.hit_rate, 4))
        return counts


def _within(scope: CallScope, work: Callable[[], T]) -> T:
    with scope.active():
        return work()


def _completion_tokens(result) -> int:
    usage = result.get("usage") if isinstance(result, dict) else None
    return int((usage or {}).get("completion_tokens") or 0)


class ServedRuns:
    """The runs one server answers, by name (their folders' names), each its own ``ServedProgram``: what stopping
    and /healthz ask of the server, asked of each. With one run, it is that run's own (its stats unchanged)."""

    def __init__(self, programs: dict[str, ServedProgram], run_dirs: dict[str, str]):
        self.programs, self.run_dirs = programs, run_dirs

    @property
    def several(self) -> bool:
        return len(self.programs) > 1

    @property
    def first(self) -> ServedProgram:
        return next(iter(self.programs.values()))

    @property
    def draining(self) -> bool:
        return self.first.draining

    @property
    def in_flight(self) -> int:
        return sum(program.in_flight for program in self.programs.values())

    def stop_accepting(self) -> None:
        for program in self.programs.values():
            program.stop_accepting()

    def close(self) -> None:
        for program in self.programs.values():
            program.close()

    def stats(self) -> dict:
        """One run's ``ServedProgram.stats``; for several, the counts summed and each run's own under ``runs``."""
        if not self.several:
            return self.first.stats()
        each = {name: program.stats() for name, program in self.programs.items()}
        totals = {key: sum(stats[key] for stats in each.values())
                  for key in ("in_flight", "answered", "failed", "completion_tokens")}
        return {**totals, "runs": each}
