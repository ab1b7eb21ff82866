"""A chat model behind a server (DSPy's own engines: its native one or LiteLLM), streamed: the answer's pieces as the
server sends them, as the stream events ``serve``'s chat route reads from an in-process engine.

DSPy streams a call to such a model when its settings hold a ``send_stream``: it chooses the engine, sends the
request, and hands each piece to ``send_stream.send`` from the calling thread through AnyIO (``anyio.from_thread``),
so the call must run on an AnyIO worker thread. Here it runs on one of a private event loop's (a blocking portal),
and its pieces come back through a queue: the provider, credentials and retries stay DSPy's.

A call whose scope is cancelled (``serve``'s --timeout, a client that went away) fails at its next piece: DSPy then
closes the connection, and the server stops generating.
"""

import queue
from collections.abc import Iterator

import dspy

from smelt.lm.call_scope import CallCancelled, CallScope, current_scope

_END = object()


class _Pieces:
    """DSPy's ``send_stream`` for one call: what it sends is queued for the iterator that reads it."""

    def __init__(self, scope: CallScope | None):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.scope = scope
        self.abandoned = False

    async def send(self, chunk) -> None:
        if self.abandoned or (self.scope is not None and self.scope.cancelled):
            raise CallCancelled("the streamed reply was cancelled")
        self.queue.put(chunk)


def relayed_events(lm: dspy.LM, request) -> Iterator:
    """DSPy's stream events for ``request`` (a ``dspy.lm15.Request``) on ``lm``: a text delta per piece as it comes,
    then the end event with the finish reason and the token counts. The call's failure is raised where it happens."""
    import anyio
    from anyio.from_thread import start_blocking_portal
    from dspy.lm15 import StreamDeltaEvent, TextDelta, response_to_events

    pieces = _Pieces(current_scope())

    def call():
        with dspy.context(send_stream=pieces):
            return lm(request)

    with start_blocking_portal() as portal:
        answer = portal.start_task_soon(anyio.to_thread.run_sync, call)
        answer.add_done_callback(lambda _: pieces.queue.put(_END))
        try:
            while (chunk := pieces.queue.get()) is not _END:
                text = chunk.choices[0].delta.get("content") if chunk.choices else None
                if text:
                    yield StreamDeltaEvent(delta=TextDelta(text=text))
            yield from (event for event in response_to_events(answer.result()) if event.type == "end")
        finally:
            pieces.abandoned = True  # a reader that stops early: the call ends at its next piece
