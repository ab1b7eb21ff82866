"""Cancelling the model calls one request makes, where nobody will read their answers any more.

``serve`` answers a request that ran past ``--timeout`` with a 504 at once, but the thread that runs the program is
still waiting on the engine. Run that program inside ``scope.active()`` and call ``scope.cancel()`` then: the
engine drops the scope's calls, queued or decoding, at its next step, and each raises ``CallCancelled`` in its
thread, so the batch's slot and the worker thread are free again.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_current = threading.local()


class CallCancelled(Exception):
    """A model call dropped because its scope was cancelled (nobody waits for its answer)."""


class CallScope:
    """The engine calls made on one thread while ``active()``; ``cancel()`` may be called from any thread."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True  # read by the engine's worker at its next admission or step

    @contextmanager
    def active(self) -> Iterator["CallScope"]:
        previous = getattr(_current, "scope", None)
        _current.scope = self
        try:
            yield self
        finally:
            _current.scope = previous


def current_scope() -> CallScope | None:
    """The scope of the calling thread, if it runs inside one."""
    return getattr(_current, "scope", None)
