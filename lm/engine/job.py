"""One request on the engine's queue: its prompt and settings, its answer pattern compiled (``constrained_rows``), the
caller's ``CallScope`` (if it may cancel the call), and how its answer gets back: ``done`` with a result or an error,
and for a streamed call its tokens after each step."""

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from smelt.lm.call_scope import CallScope, current_scope
from smelt.lm.generation import Generation, GenerationSettings


@dataclass
class EngineJob:
    prompt_ids: list[int]
    settings: GenerationSettings
    constraint: Any = None  # the compiled pattern of settings.pattern (AnswerPatterns.compiled); None: unconstrained
    done: threading.Event = field(default_factory=threading.Event)
    result: Generation | None = None
    error: BaseException | None = None
    scope: CallScope | None = field(default_factory=current_scope)  # the caller's, if it may cancel the call
    progress: queue.SimpleQueue | None = None  # a streamed call's: its tokens so far after each step, then None

    @property
    def cancelled(self) -> bool:
        return self.scope is not None and self.scope.cancelled

    def report(self, tokens: list[int]) -> None:
        if self.progress is not None:
            self.progress.put(list(tokens))

    def succeed(self, result: Generation) -> None:
        self.result = result
        self._end()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._end()

    def _end(self) -> None:
        self.done.set()
        if self.progress is not None:
            self.progress.put(None)
