"""Where requests meet the model: a pool of --threads worker threads, so that concurrent requests call the program
at the same time and the in-process engine decodes them in one batch (``smelt.lm.engine``: continuous batching and
a prefix cache), not one after another behind a lock. Each request waits at most --timeout; once the server is
told to stop, new requests are refused (503) while those in flight finish."""

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from smelt.commands.common import LoadedRun
from smelt.lm.call_scope import CallScope
from smelt.serving.prediction import RequestFailed

T = TypeVar("T")


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
        with self._lock:
            self.in_flight += 1
        try:
            if self.draining:
                raise RequestFailed(503, "the server is shutting down; send the request to another instance or "
                                         "retry once it is back")
            scope = CallScope()
            future = self.pool.submit(_within, scope, work)
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
            except TimeoutError:
                future.cancel()  # still queued: never run
                scope.cancel()  # already running: the engine drops its model calls at its next step
                raise RequestFailed(504, f"no answer within {self.timeout:g} s (--timeout); the server is busy or "
                                         "the inputs are long") from None
        except RequestFailed:
            with self._lock:
                self.failed += 1
            raise
        finally:
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            self.answered += 1
            self.completion_tokens += _completion_tokens(result)
        return result

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
