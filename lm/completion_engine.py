"""A base model behind a server, prompted exactly as in this process: the server's completion endpoint.

A base model has no chat template, so a server's chat endpoint either refuses (``transformers serve``) or formats
the messages in some other model's chat format (llama.cpp's server fell back to llama-2's). A spec
``text-completion-openai/<model>`` therefore sends ``POST {api_base}/completions`` with the prompt smelt's
in-process engine builds for a base model (``rendering.render_transcript``: DSPy's field markers, and the
assistant's prefill, as one document), the request's ``max_tokens``, temperature and stop strings. vLLM, SGLang,
llama.cpp's server and ``transformers serve`` all serve this endpoint.
"""

import httpx
from dspy.clients.engines.base import validate_request
from dspy.lm15 import (
    AuthError,
    InvalidRequestError,
    Message,
    RateLimitError,
    Response,
    ServerError,
    TextPart,
    TimeoutError,
    TransportError,
    Usage,
    response_to_events,
)

from smelt.lm.generation import GenerationSettings
from smelt.lm.rendering import messages_from_request, render_transcript
from smelt.redaction import redact_text


def cut_at_stop(text: str, stops) -> tuple[str, bool]:
    """``text`` up to its first stop string, as the in-process engine ends an answer: a server that ignores
    ``stop`` (``transformers serve``'s completion endpoint does) still gives the same answer, only later."""
    ends = [i for i in (text.find(stop) for stop in stops or ()) if i >= 0]
    return (text[:min(ends)], True) if ends else (text, False)


class CompletionServerEngine:
    """A DSPy engine calling an OpenAI-compatible ``/completions`` endpoint; DSPy's LM layer adds its cache and
    retries. Thread-safe: one pooled HTTP client serves every thread (evaluation runs --threads requests at once)."""

    def __init__(self, model: str, api_base: str, api_key: str | None, *, timeout_s: float):
        self.model = model
        self.url = api_base.rstrip("/") + "/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s,
                                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def complete(self, request) -> Response:
        validate_request(request)
        settings = GenerationSettings.from_config(request.config)
        body = {"model": self.model, "prompt": render_transcript(messages_from_request(request)),
                "max_tokens": settings.max_new_tokens, "temperature": settings.temperature}
        if settings.stop:
            body["stop"] = list(settings.stop)
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        if settings.seed is not None:
            body["seed"] = settings.seed
        reply = self._post(body)
        choice = (reply.get("choices") or [{}])[0]
        text = choice.get("text")
        if not isinstance(text, str):
            raise ServerError(f"{self.url}: the reply has no choices[0].text: {redact_text(str(reply))[:200]}")
        usage = reply.get("usage") or {}
        text, stopped = cut_at_stop(text, settings.stop)
        return Response(id=reply.get("id"), model=self.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop" if stopped else choice.get("finish_reason") or "stop",
                        usage=Usage(input_tokens=usage.get("prompt_tokens") or 0,
                                    output_tokens=usage.get("completion_tokens") or 0))

    def stream(self, request):
        return response_to_events(self.complete(request))

    def close(self) -> None:
        self._client.close()

    def _post(self, body: dict) -> dict:
        try:
            response = self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"{self.url}: no reply in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise TransportError(f"{self.url}: {type(exc).__name__}: {redact_text(str(exc))[:200]}") from None
        if response.status_code >= 400:
            detail = redact_text(response.text.strip().replace("\n", " "))[:200]
            message = f"{self.url}: HTTP {response.status_code}: {detail}"
            error = {401: AuthError, 403: AuthError, 429: RateLimitError}.get(response.status_code)
            if error is None:
                error = ServerError if response.status_code >= 500 else InvalidRequestError
            raise error(message)
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"{self.url}: the reply is not JSON: {redact_text(response.text)[:200]!r}") from None
