"""From a spec string to a ready ``dspy.LM`` and the adapter that suits it."""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import dspy

from smelt.errors import SmeltError
from smelt.lm.completion_engine import CompletionServerEngine
from smelt.lm.credentials import endpoint
from smelt.lm.generation import DEFAULT_MAX_TOKENS
from smelt.lm.gguf_files import gguf_model
from smelt.lm.llamacpp_server import server_for
from smelt.lm.loading import load_model
from smelt.lm.lora_gguf import gguf_lora_adapter
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.lm.response_cache import key_responses_by_server
from smelt.lm.server_adapter import ServerChatAdapter
from smelt.lm.specs import ModelSpec, parse_spec
from smelt.redaction import redact

# Retries for LiteLLM models. DSPy 3.4 owns them (it calls LiteLLM and its native lm15 engine with
# num_retries=0, see dspy/clients/execution.py): a rate limit (429), a timeout, a 5xx or a connection error is
# retried up to API_RETRIES times, after the server's Retry-After seconds when it sends one (not capped), else
# after 2**attempt seconds: 1, 2, 4, 8 (capped at 60, no jitter). Other errors (auth, bad request) are not retried.
API_RETRIES = 4
# Seconds to wait for a reply (the read timeout: a non-streamed answer counts in full) instead of the engines'
# 600 s default. A timeout is retried too, so a hung server costs (API_RETRIES + 1) x this; 300 s still lets a
# slow local server (ollama on a CPU, queueing --threads requests) finish a long answer.
REQUEST_TIMEOUT_S = 300
# A server chat model's token budget when its predictor sets none (a judge's verdict): every request carries one.
# (A completion-endpoint model gets the in-process DEFAULT_MAX_TOKENS instead.)
SERVER_MAX_TOKENS = 1024


@dataclass
class ResolvedLM:
    """A model ready for DSPy: the LM, the adapter to format for it, and (in-process) its engine."""

    spec: ModelSpec
    lm: dspy.LM
    adapter: dspy.Adapter
    engine: object | None = None
    adapter_dir: str | None = None
    api_base: str | None = None  # a server model's --api-base as it may be recorded (no password)
    weights: dict = field(default_factory=dict)  # what else identifies the weights in a manifest (a GGUF's sha256)

    def context(self):
        """``with resolved.context(): ...`` runs DSPy calls on this model without touching global settings."""
        return dspy.context(lm=self.lm, adapter=self.adapter)

    def describe(self) -> dict:
        """What a manifest records about this model (never an API key)."""
        described = {"spec": self.spec.raw, "kind": self.spec.kind, "target": self.spec.target}
        if self.engine is not None:
            described["device"] = self.engine.device
            described["dtype"] = self.engine.dtype
        if self.adapter_dir:
            described["adapter"] = self.adapter_dir
        if self.api_base:
            described["api_base"] = self.api_base
        described.update(self.weights)
        if not getattr(self.adapter, "instructions", True):
            described["instructions"] = False
        return described


def lm_for_spec(
    spec: str,
    *,
    option: str = "--lm",
    device: str = "auto",
    adapter: str | Path | None = None,
    api_base: str | None = None,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    cache: bool = True,
    max_batch_size: int = 16,
    instructions: bool = True,
) -> ResolvedLM:
    """Resolve a spec string (see ``smelt.lm.specs``) into a model DSPy can call.

    ``instructions=False`` formats prompts without DSPy's system message: the lean prompt of a
    distilled student, whose adapter was trained on that format (see ``PrefillChatAdapter``).
    """
    parsed = parse_spec(spec, option)
    if parsed.kind == "gguf":
        return _gguf_lm(parsed, device=device, adapter=adapter, temperature=temperature, max_tokens=max_tokens,
                        cache=cache, instructions=instructions)
    if not parsed.in_process:
        if adapter:
            raise SmeltError(f"{option} {spec}: a LoRA adapter can only be attached to an in-process (hf:) model")
        return _server_lm(parsed, api_base, temperature=temperature, max_tokens=max_tokens, cache=cache)

    loaded = load_model(parsed, device=device, adapter=adapter)
    # DSPy's response cache is keyed by the model name: the dtype and an adapter must change that name.
    name = f"{parsed.raw}@{loaded.dtype}" + (f"+lora-{_digest(adapter)}" if adapter else "")
    # One engine per loaded model: a second lm_for_spec on it (--judge = --lm, teacher = student) shares the
    # worker and its batches; only the dspy.LM (cache flag, name) and the adapter (instructions) differ.
    engine = loaded.engine(name=name, max_batch_size=max_batch_size)
    lm = dspy.LM(
        f"smelt/{name}",
        engine=engine,
        temperature=temperature,
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
        cache=cache,
    )
    return ResolvedLM(parsed, lm, PrefillChatAdapter(instructions=instructions), engine,
                      str(adapter) if adapter else None)


def _server_lm(parsed: ModelSpec, api_base: str | None, *, temperature: float, max_tokens: int | None,
               cache: bool) -> ResolvedLM:
    """A LiteLLM model. The URL goes on without its user part, which becomes the key (``smelt.lm.credentials``).
    Your own server (``--api-base``) is called through LiteLLM, which sends the token budget as ``max_tokens``, the
    field every OpenAI-compatible server reads (DSPy's native engine sends ``openai/`` requests
    ``max_completion_tokens``, which llama.cpp's server ignores); with the stop strings of ``ServerChatAdapter``,
    every request ends where the answer does."""
    key_responses_by_server()
    if parsed.kind == "completion":
        return _completion_server_lm(parsed, api_base, temperature=temperature, max_tokens=max_tokens, cache=cache)
    where = endpoint(api_base, parsed.target.split("/", 1)[0])
    kwargs = {}
    if where.api_base:
        kwargs.update(api_base=where.api_base, engine="litellm")
    if where.api_key:
        kwargs["api_key"] = where.api_key
    lm = dspy.LM(parsed.target, temperature=temperature, max_tokens=max_tokens or SERVER_MAX_TOKENS, cache=cache,
                 num_retries=API_RETRIES, timeout=REQUEST_TIMEOUT_S, **kwargs)
    return ResolvedLM(parsed, lm, ServerChatAdapter(), api_base=redact(api_base) if api_base else None)


def _completion_server_lm(parsed: ModelSpec, api_base: str | None, *, temperature: float, max_tokens: int | None,
                          cache: bool) -> ResolvedLM:
    """A base model behind a server's completion endpoint (``completion_engine``), sent the in-process engine's
    prompts through the same adapter: the same tokens reach the same weights wherever they run."""
    if not api_base:
        raise SmeltError(f"{parsed.raw}: a completion-endpoint model needs --api-base, the server's URL, e.g. "
                         "http://127.0.0.1:8000/v1")
    where = endpoint(api_base)
    engine = CompletionServerEngine(parsed.target, where.api_base, where.api_key, timeout_s=REQUEST_TIMEOUT_S)
    # DSPy caches by model name: the server is part of it (two servers may serve different weights as one name).
    # The in-process budget where the predictor sets none (a judge's verdict), not SERVER_MAX_TOKENS: prompted as
    # in-process, a base model must also stop where it would in-process, or a long verdict differs (and a server
    # that ignores `stop` would write the whole budget).
    lm = dspy.LM(f"smelt-completion/{parsed.target}@{redact(where.api_base)}", engine=engine,
                 temperature=temperature, max_tokens=max_tokens or DEFAULT_MAX_TOKENS, cache=cache,
                 num_retries=API_RETRIES)
    return ResolvedLM(parsed, lm, PrefillChatAdapter(), api_base=redact(api_base))


def _gguf_lm(parsed: ModelSpec, *, device: str, adapter: str | Path | None, temperature: float,
             max_tokens: int | None, cache: bool, instructions: bool) -> ResolvedLM:
    """A GGUF file on llama.cpp's server, started in this process (``llamacpp_server``) and prompted through its
    completion endpoint exactly as the in-process engine prompts a base model (``completion_engine``). A run's
    peft adapter is converted to a GGUF LoRA adapter once (``lora_gguf``) and applied per request."""
    model = gguf_model(parsed.target)
    lora = gguf_lora_adapter(Path(adapter), model.path) if adapter else None
    server = server_for(model.path, context_length=model.context_length, adapters=(lora,) if lora else (),
                        device=device)
    engine = CompletionServerEngine(parsed.target, server.url, server.api_key, timeout_s=REQUEST_TIMEOUT_S,
                                    extra_body=server.adapter_request(lora))
    # DSPy's response cache is keyed by the model name: the weights (not the port of this process's server) and
    # the adapter make it.
    name = f"{parsed.raw}@{model.sha256[:12]}" + (f"+lora-{_digest(adapter)}" if adapter else "")
    lm = dspy.LM(f"smelt-gguf/{name}", engine=engine, temperature=temperature,
                 max_tokens=max_tokens or DEFAULT_MAX_TOKENS, cache=cache, num_retries=API_RETRIES)
    return ResolvedLM(parsed, lm, PrefillChatAdapter(instructions=instructions), adapter_dir=str(adapter) if adapter
                      else None, weights={"file": str(model.path), "sha256": model.sha256, "device": server.device})


def build_lm(spec: str, **kwargs) -> dspy.LM:
    """Just the ``dspy.LM`` for a spec, for use with ``dspy.configure(lm=...)``."""
    return lm_for_spec(spec, **kwargs).lm


def _digest(adapter: str | Path) -> str:
    weights = Path(adapter) / "adapter_model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
