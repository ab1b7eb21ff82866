"""``POST /v1/chat/completions``: the served model itself (with a distill run's adapter), as OpenAI's chat API
shapes it, so tools that speak that API can call it. ``max_tokens`` (or ``max_completion_tokens``), ``stop``,
``temperature`` (default 0: greedy), ``top_p`` and ``seed`` are honoured. With ``"stream": true`` the reply is
OpenAI's server-sent ``chat.completion.chunk`` events: the text as it settles, from the in-process model, a
completion endpoint or a chat model behind a server."""

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import chain
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from smelt.lifecycle.reloaded_run import LoadedRun
from smelt.lm.call_failure import model_call_failed
from smelt.serving.prediction import RequestFailed
from smelt.serving.relayed_stream import relayed_events


class TextContent(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. "name": nothing to do with it here

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextContent] = Field(description="the text, or a list of text parts")

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = Field(False, description="a last chunk with the token counts")


class ChatRequest(BaseModel):
    """OpenAI's chat request, less what this server cannot honour (refused by name rather than ignored)."""

    model_config = ConfigDict(extra="ignore")  # OpenAI clients send defaults such as "user" or "logit_bias": {}

    model: str | None = Field(None, description="any name: this server serves one model (GET /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, description="tokens to generate at most")
    max_completion_tokens: int | None = Field(None, ge=1, description="the same as max_tokens")
    stop: str | list[str] | None = Field(None, description="the answer ends before the first of these")
    temperature: float | None = Field(None, ge=0, le=2, description="0 (the default here) decodes greedily")
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1, description="one choice per request")
    stream: bool = Field(False, description="send the answer as server-sent events (chat.completion.chunk)")
    stream_options: StreamOptions | None = None
    tools: list | None = Field(None, description="not supported")

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list | None) -> list | None:
        if value:
            raise ValueError("tool calls are not supported by this server; leave \"tools\" out")
        return value

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (len(value) > 4 or not all(value)):
            raise ValueError("up to 4 stop strings, none empty")
        return value


def lm15_request(loaded: LoadedRun, body: ChatRequest):
    """The chat as the request DSPy hands the model (system and developer messages first, as instructions)."""
    from dspy.lm15 import Config, Message, Request

    system = "\n\n".join(m.text() for m in body.messages if m.role in ("system", "developer")) or None
    turns = tuple(Message.user(m.text()) if m.role == "user" else Message.assistant(m.text())
                  for m in body.messages if m.role in ("user", "assistant"))
    if not turns:
        raise RequestFailed(422, "messages: no user message; add one with \"role\": \"user\"", "messages")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    config = Config(max_tokens=body.max_tokens or body.max_completion_tokens or loaded.lm.lm.kwargs.get("max_tokens"),
                    temperature=body.temperature or 0.0, top_p=body.top_p, stop=stop, seed=body.seed)
    try:
        return Request(model=loaded.lm.lm.model, messages=turns, system=system, config=config)
    except (TypeError, ValueError) as exc:
        raise RequestFailed(422, f"messages: {exc}", "messages") from None


def complete(loaded: LoadedRun, body: ChatRequest, model_id: str) -> dict:
    """The model's reply to the chat, as OpenAI's ``chat.completion`` object (run in a pool thread)."""
    from dspy.utils.exceptions import ContextWindowExceededError

    request = lm15_request(loaded, body)
    try:
        response = loaded.lm.lm(request)
    except ContextWindowExceededError as exc:
        raise RequestFailed(422, f"messages: too long for the model: {str(exc)[:300]}", "messages") from None
    except Exception as exc:  # noqa: BLE001 - a model call that failed: one line, and the server stays up
        raise RequestFailed(502, model_call_failed(loaded.lm.spec.raw, exc)) from None
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": response.text or ""},
                     "finish_reason": "length" if response.finish_reason == "length" else "stop"}],
        "usage": _usage(response.usage),
    }


def stream_events(loaded: LoadedRun, body: ChatRequest) -> Iterator:
    """DSPy's stream events for the chat (run in a pool thread) as the tokens come: from the in-process engine, a
    completion endpoint, or a chat model behind a server (``relayed_stream``). The first event is taken here: a
    prompt too long, or a server that refuses, is an error reply, not a broken stream."""
    from dspy.lm15 import ContextLengthError
    from dspy.utils.exceptions import ContextWindowExceededError

    request = lm15_request(loaded, body)
    engine = loaded.lm.engine or loaded.lm.lm.engine  # in-process; else the engine object of a completion endpoint
    try:
        # "auto" or "litellm": a chat model behind a server, which DSPy's own engines stream
        events = engine.stream(request) if hasattr(engine, "stream") else relayed_events(loaded.lm.lm, request)
        return chain([next(events)], events)
    except (ContextLengthError, ContextWindowExceededError) as exc:
        raise RequestFailed(422, f"messages: too long for the model: {str(exc)[:300]}", "messages") from None
    except Exception as exc:  # noqa: BLE001 - as complete(): one line
        raise RequestFailed(502, model_call_failed(loaded.lm.spec.raw, exc)) from None


async def sse_chunks(events: AsyncIterator, loaded: LoadedRun, model_id: str, include_usage: bool,
                     finished: Callable[[str, dict | None, str | None], None]) -> AsyncIterator[str]:
    """OpenAI's ``chat.completion.chunk`` server-sent events for DSPy's stream events, then ``data: [DONE]``. A
    failure after the first chunk (the model, --timeout) is an error event; ``finished(text, usage, error)`` is
    called once at the end."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model_id}

    def chunk(delta: dict, finish_reason: str | None = None, **extra) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return f"data: {json.dumps({**base, 'choices': [choice], **extra}, ensure_ascii=False)}\n\n"

    text, usage, error, kind = [], None, None, "model_error"
    try:
        yield chunk({"role": "assistant", "content": ""})
        async for event in events:
            if event.type == "delta" and event.delta.type == "text" and event.delta.text:
                text.append(event.delta.text)
                yield chunk({"content": event.delta.text})
            elif event.type == "end":
                usage = _usage(event.usage)
                yield chunk({}, "length" if event.finish_reason == "length" else "stop")
        if include_usage and usage is not None:
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"
    except RequestFailed as exc:
        error, kind = exc.message, "timeout" if exc.status == 504 else "error"
    except Exception as exc:  # noqa: BLE001 - the model failed mid-answer: say so in the stream, stay up
        error = model_call_failed(loaded.lm.spec.raw, exc)
    finally:
        finished("".join(text), usage, error)
    if error is not None:
        yield f"data: {json.dumps({'error': {'message': error, 'type': kind}})}\n\n"


def _usage(usage) -> dict | None:
    if usage is None:
        return None
    prompt, completion = int(usage.input_tokens or 0), int(usage.output_tokens or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
