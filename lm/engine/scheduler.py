"""Which queued requests the model works on next: the engine's queue and its batching decisions, apart from the model
step (``model_runner``), as vLLM's v1 engine keeps its scheduler behind an interface.

- Continuous batching (``admit``): queued requests join the running batch at the next step, oldest first, as many
  as it has room for (``max_batch_size``). After a step that answered some, the next step waits a moment for those
  callers' next requests (``after_step``), which DSPy's threads and HTTP clients send within milliseconds.
- Padded batching (``next_batch``), for models whose cache is not made of plain full or sliding-window layers: the
  oldest request and those queued with equal settings, for one left-padded ``generate`` call.
- Either way, a worker with nothing running waits ``gather_seconds`` before it takes requests, so that threads about
  to submit arrive together (``wait_for_work``).

The scheduler only decides; the engine's worker thread asks it what to run and has the model runner run it.
"""

import threading
import time
from collections.abc import Callable, Iterable

from smelt.lm.engine.job import EngineJob
from smelt.lm.generation import GenerationSettings


class Scheduler:
    """The engine's queue of jobs, and which of them run at the next step."""

    def __init__(self, *, max_batch_size: int, gather_seconds: float, continuous: bool):
        self.max_batch_size = max_batch_size
        self.gather_seconds = gather_seconds
        self.continuous = continuous  # continuous batching; else padded generate calls
        # Requests taken from the queue at once (one entry per admission, or per generate call when not
        # continuous) since the last close(), for benchmarks and tests.
        self.batch_sizes: list[int] = []
        self._pending: list[EngineJob] = []
        self._wakeup = threading.Condition()
        self._closed = False
        self._callers_return = True  # whether answered callers are sending new requests (_await_returning_callers)

    # --- the queue ---------------------------------------------------------------------
    def submit(self, jobs: Iterable[EngineJob], start_worker: Callable[[], bool]) -> None:
        """Queue jobs, all at once: jobs sent together join the batch at the same step. ``start_worker`` starts the
        engine's worker if none runs, and says whether it did; it is called holding the queue's lock."""
        with self._wakeup:
            self._pending.extend(jobs)
            self._callers_return = True
            if start_worker():
                self._closed = False
            self._wakeup.notify()

    def close(self) -> None:
        """Let the worker stop once the queue is empty and nothing runs; start ``batch_sizes`` afresh."""
        with self._wakeup:
            self._closed = True
            self.batch_sizes = []
            self._wakeup.notify_all()

    def wait_for_work(self, running_rows: int, stop_worker: Callable[[], None]) -> bool:
        """Wait until a job is queued or rows are running; False once closed with neither, after calling
        ``stop_worker`` holding the queue's lock (so a job is never left to a worker that is stopping). With no rows
        running, wait ``gather_seconds`` more: threads that are about to submit arrive together."""
        with self._wakeup:
            while not self._pending and not running_rows and not self._closed:
                self._wakeup.wait()
            if self._closed and not self._pending and not running_rows:
                stop_worker()
                return False
        if not running_rows:
            time.sleep(self.gather_seconds)  # give threads that are about to submit a moment to arrive together
        return True

    # --- continuous batching -----------------------------------------------------------
    def admit(self, running_rows: int) -> list[EngineJob]:
        """The queued jobs that join the running batch at the next step: as many as it has room for, oldest first."""
        return self._take(self.max_batch_size - running_rows)

    def after_step(self, finished: int, running_rows: int, step_seconds: float) -> None:
        """After a step that answered ``finished`` requests, with rows still running: wait for those callers' next
        requests (``_await_returning_callers``), as many as the batch has room for."""
        if finished and running_rows:
            self._await_returning_callers(min(finished, self.max_batch_size - running_rows), step_seconds)

    def _await_returning_callers(self, count: int, step_seconds: float) -> None:
        """Wait for ``count`` jobs to be queued before the next step, up to ``gather_seconds`` and a quarter of the
        step that answered their callers. A caller that sends its next request as soon as its answer comes (DSPy's
        threads, an HTTP client's loop) takes a few milliseconds to do so; without the wait its request misses the
        step that starts at once and joins a whole step later. The wait is skipped once a wait has gone by with no
        job arriving, until a job arrives again (the end of a workload, or callers that do not return), and a
        quarter step bounds what it costs the rows decoding meanwhile (a GPU's short steps)."""
        if not self._callers_return:
            return
        deadline = time.monotonic() + min(self.gather_seconds, step_seconds / 4)
        with self._wakeup:
            queued = len(self._pending)
            if queued >= count:
                return
            while len(self._pending) < count and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wakeup.wait(left)
            self._callers_return = len(self._pending) > queued

    # --- padded batching ---------------------------------------------------------------
    def next_batch(self) -> tuple[GenerationSettings, list[EngineJob]] | None:
        """The oldest queued job and those queued with the same settings (up to ``max_batch_size``), for one padded
        ``generate`` call; None when nothing is queued."""
        with self._wakeup:
            if not self._pending:
                return None
            settings = self._pending[0].settings
        return settings, self._take(self.max_batch_size, settings)

    def _take(self, limit: int, settings: GenerationSettings | None = None) -> list[EngineJob]:
        """Up to ``limit`` queued jobs, oldest first (only those with these settings, if given)."""
        with self._wakeup:
            jobs = [job for job in self._pending if settings is None or job.settings == settings][:limit]
            for job in jobs:
                self._pending.remove(job)
        if jobs:
            self.batch_sizes.append(len(jobs))
        return jobs
