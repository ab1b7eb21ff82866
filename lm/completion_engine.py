"""A base model behind a server, prompted exactly as in this process: the server's completion endpoint.

A base model has no chat template, so a server's chat endpoint either refuses (``transformers serve``) or formats
the messages in some other model's chat format (llama.cpp's server fell back to llama-2's). A spec
``text-completion-openai/<model>`` therefore sends ``POST {api_base}/completions`` with the prompt smelt's
in-process engine builds for a base model (``rendering.render_transcript``: DSPy's field markers, and the
assistant's prefill, as one document), the request's ``max_tokens``, temperature and stop strings. vLLM, SGLang,
llama.cpp's server and ``transformers serve`` all serve this endpoint.

A request's answer pattern (``completion_pattern``) goes in the field the server takes it in (``server_constraints``:
vLLM, SGLang, llama.cpp's server); a server that takes none answers unconstrained, said once.

The reply is streamed (``"stream": true``, usage in its last event), so that a call whose ``CallScope`` is cancelled
(serve's request past ``--timeout``) closes its connection at the next token, and the server, which stops a
generation whose client went away, stops generating for it. The answer and its token counts are those of a
reply sent whole.
"""

import json
from collections import deque
from dataclasses import replace
from itertools import chain

import httpx
from dspy.clients.engines.base import validate_request
from dspy.lm15 import (
    AuthError,
    InvalidRequestError,
    Message,
    RateLimitError,
    Response,
    ServerError,
    StreamDeltaEvent,
    StreamEndEvent,
    StreamStartEvent,
    TextDelta,
    TextPart,
    TimeoutError,
    TransportError,
    Usage,
)

from smelt.lm.call_scope import CallCancelled, current_scope
from smelt.lm.generation import GenerationSettings, stream_pieces
from smelt.lm.rendering import messages_from_request, render_transcript
from smelt.lm.server_constraints import ServerConstraints
from smelt.redaction import redact, redact_text


def cut_at_stop(text: str, stops) -> tuple[str, bool]:
    """``text`` up to its first stop string, as the in-process engine ends an answer: a server that ignores
    ``stop`` (``transformers serve``'s completion endpoint does) still gives the same answer, only later."""
    ends = [i for i in (text.find(stop) for stop in stops or ()) if i >= 0]
    return (text[:min(ends)], True) if ends else (text, False)


class CompletionServerEngine:
    """A DSPy engine calling an OpenAI-compatible ``/completions`` endpoint; DSPy's LM layer adds its cache and
    retries. Thread-safe: one pooled HTTP client serves every thread (evaluation runs --threads requests at once)."""

    takes_completion_pattern = True  # handed to the server where it takes one (server_constraints)

    def __init__(self, model: str, api_base: str, api_key: str | None, *, timeout_s: float,
                 extra_body: dict | None = None):
        self.model = model
        self.extra_body = dict(extra_body or {})  # sent with every request (llama.cpp's per-request ``lora``)
        self.url = api_base.rstrip("/") + "/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s,
                                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.constraints = ServerConstraints(self._client, api_base, f"{model}@{redact(api_base)}")

    def complete(self, request) -> Response:
        settings = GenerationSettings.from_config(request.config)
        last = deque(self._progress(request, settings), maxlen=1)  # the whole reply: its last state
        return self._response(*(last[0] if last else ("", None, {})), settings)

    def stream(self, request):
        """The answer as DSPy's stream events, its text sent as it settles (``stream_pieces``). The request is sent,
        and refused if the server refuses it, before the first event. Read to its end (a server that ignores ``stop``
        goes on past it, unseen), so the token counts are the server's."""
        settings = GenerationSettings.from_config(request.config)
        progress = self._progress(request, settings)
        last = [next(progress, ("", None, {}))]  # the reply so far: (text, finish reason, usage)
        yield StreamStartEvent(model=self.model)

        def partial_texts():
            for state in chain(last[:1], progress):
                last[0] = state
                yield state[0]

        for piece in stream_pieces(partial_texts(), settings.stop,
                                   lambda: self._response(*last[0], settings).text):
            yield StreamDeltaEvent(delta=TextDelta(text=piece))
        response = self._response(*last[0], settings)
        yield StreamEndEvent(finish_reason=response.finish_reason, usage=response.usage)

    def close(self) -> None:
        self._client.close()

    def _response(self, text: str, finish_reason: str | None, usage: dict, settings: GenerationSettings) -> Response:
        text, stopped = cut_at_stop(text, settings.stop)
        return Response(id=None, model=self.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop" if stopped else finish_reason or "stop",
                        usage=Usage(input_tokens=usage.get("prompt_tokens") or 0,
                                    output_tokens=usage.get("completion_tokens") or 0))

    def _progress(self, request, settings: GenerationSettings):
        """The streamed reply so far after each of its events: (text, finish reason, usage). ``CallCancelled``, and
        the connection closed, at the first event after the calling thread's scope is cancelled."""
        validate_request(request)
        body = {"model": self.model, "prompt": render_transcript(messages_from_request(request)),
                "max_tokens": settings.max_new_tokens, "temperature": settings.temperature,
                "stream": True, "stream_options": {"include_usage": True}, **self.extra_body}
        if settings.stop:
            body["stop"] = list(settings.stop)
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        if settings.seed is not None:
            body["seed"] = settings.seed
        constraint = self.constraints.fields(settings.pattern) if settings.pattern else {}
        body.update(constraint)
        scope = current_scope()
        pieces, finish_reason, usage, refused = [], None, {}, None
        try:
            with self._client.stream("POST", self.url, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    if not (constraint and response.status_code in (400, 422)):
                        raise self._refused(response)
                    refused = redact_text(response.text.strip().replace("\n", " "))  # the pattern, most likely
                for event in () if refused is not None else _events(response, self.url):
                    if scope is not None and scope.cancelled:
                        raise CallCancelled(f"cancelled after {len(pieces)} streamed pieces")
                    for choice in event.get("choices") or ():
                        pieces.append(choice.get("text") or "")
                        finish_reason = choice.get("finish_reason") or finish_reason
                    usage = event.get("usage") or usage
                    yield "".join(pieces), finish_reason, usage
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"{self.url}: no reply in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{self.url}: {type(exc).__name__}: {redact_text(str(exc))[:200]}") from None
        if refused is not None:  # the same request again, without the pattern (and every later one with it)
            self.constraints.refused(settings.pattern, refused)
            yield from self._progress(request, replace(settings, pattern=None))

    def _refused(self, response: httpx.Response) -> Exception:
        detail = redact_text(response.text.strip().replace("\n", " "))[:200]
        message = f"{self.url}: HTTP {response.status_code}: {detail}"
        error = {401: AuthError, 403: AuthError, 429: RateLimitError}.get(response.status_code)
        if error is None:
            error = ServerError if response.status_code >= 500 else InvalidRequestError
        return error(message)


def _events(response: httpx.Response, url: str):
    """The JSON objects of a server-sent event stream, up to ``data: [DONE]``; an error event raises."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # a blank line between events, or a comment
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            raise ServerError(f"{url}: a streamed event is not JSON: {redact_text(data)[:200]!r}") from None
        if not isinstance(event, dict) or "error" in event:
            raise ServerError(f"{url}: the stream failed: {redact_text(str(event))[:200]}")
        yield event
