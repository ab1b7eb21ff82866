"""One string names a model everywhere: --lm, --teacher, --judge, --student.

- ``gemma-3-270m``            the embedded default (offline, from PyPI)
- ``hf:<hub id or folder>``   any transformers causal LM, run in-process
- ``gguf:<file.gguf>``        a GGUF file run by llama.cpp inside this process (``gguf:gemma-3-270m``: the
                              embedded model's own GGUF, not converted)
- an alias (``llama-3.2-3b``) an instruct checkpoint on the hub, run in-process
- ``text-completion-openai/<model>``  a base model behind a server's /v1/completions, prompted as in-process
- ``provider/model``          anything LiteLLM serves: openai/..., ollama_chat/..., hosted_vllm/...
                              (the first segment must be a LiteLLM provider)

A path that is none of these (``/nonexistent``, ``./typo``) fails here, not at the first model call.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from smelt.errors import SmeltError
from smelt.lm.backends import BACKENDS, COMPLETION_PROVIDER
from smelt.lm.embedded import EMBEDDED_SPEC
from smelt.lm.gguf_files import GGUF_MAGIC, GGUF_PREFIX, SHIPPED_GGUF_SPEC, check_gguf_file, is_shipped_weights

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

Kind = Literal["embedded", "hf", "gguf", "completion", "litellm"]  # the keys of backends.BACKENDS


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. ``target`` is a hub id or folder (in-process) or a LiteLLM model name."""

    raw: str
    kind: Kind
    target: str

    @property
    def in_process(self) -> bool:
        """Loaded by transformers in this process: trainable, run by smelt's own engine."""
        return BACKENDS[self.kind].in_process

    @property
    def local(self) -> bool:
        """Its requests never leave this process (in-process, or llama.cpp's server inside it): no --api-base."""
        return BACKENDS[self.kind].stays_local

    def weights_source(self) -> str:
        """The folder or hub id an in-process model's weights load from."""
        weights = BACKENDS[self.kind].weights
        if weights is None:
            raise ValueError(f"{self.raw} is served by LiteLLM, not loaded in-process")
        return weights(self.raw, self.target)


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
    if raw.startswith(GGUF_PREFIX):
        target = raw[len(GGUF_PREFIX):].strip()
        if not target:
            raise SmeltError(f"{option} {raw!r}: gguf: needs a .gguf file, e.g. gguf:./model-Q4_K_M.gguf, or "
                             f"{SHIPPED_GGUF_SPEC} for the embedded model's own file")
        if target != EMBEDDED_SPEC:
            target = str(check_gguf_file(target, raw, option))
        return ModelSpec(raw, "gguf", target)
    if raw.lower() in ALIASES:
        return ModelSpec(raw, "hf", ALIASES[raw.lower()])
    if "/" in raw:
        provider, model = raw.split("/", 1)
        if provider == COMPLETION_PROVIDER:  # smelt's own client: the in-process prompt, on the server's weights
            if not model.strip():
                raise SmeltError(f"{option} {raw!r}: name the served model, e.g. {COMPLETION_PROVIDER}/gemma-3-270m")
            return ModelSpec(raw, "completion", model.strip())
        if _is_litellm_provider(provider):
            return ModelSpec(raw, "litellm", raw)
        if _looks_like_path(raw):
            raise SmeltError(_not_a_model_path(raw, option))
        hub_hint = f", or hf:{raw} to run a hub model in-process" if raw.count("/") == 1 else ""
        raise SmeltError(
            f"{option} {raw}: {provider!r} is not a LiteLLM provider; use e.g. openai/..., ollama_chat/..., "
            f"hosted_vllm/... (the full list: https://docs.litellm.ai/docs/providers){hub_hint}"
        )
    if _looks_like_path(raw):
        raise SmeltError(_not_a_model_path(raw, option))
    known = ", ".join([EMBEDDED_SPEC, *ALIASES])
    raise SmeltError(
        f"{option} {raw!r}: unknown model; known names: {known}; "
        "or hf:<hub id or folder> for any transformers model, gguf:<file.gguf> for llama.cpp, or provider/model for "
        "LiteLLM (openai/gpt-4o-mini)"
    )


def _is_litellm_provider(name: str) -> bool:
    import litellm  # only for provider/model specs: importing it takes a few seconds

    return name in litellm.provider_list


def _looks_like_path(raw: str) -> bool:
    """A filesystem path rather than a model name: /abs, ./rel, ~/home, or a path whose first folder exists."""
    if raw.startswith(("/", ".", "~")):
        return True
    first = raw.split("/", 1)[0]
    return ("/" in raw and Path(first).is_dir()) or Path(os.path.expanduser(raw)).exists()


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(len(magic)) == magic
    except OSError:
        return False


_PASS_INSTEAD = ("pass a run directory (runs/<task>/<run>), hf:<folder>, an alias (see cli.py models) "
                 "or provider/model (openai/gpt-4o-mini)")


def _not_a_model_path(raw: str, option: str) -> str:
    path = Path(os.path.expanduser(raw))
    if path.is_dir() and (path / "config.json").is_file():
        return f"{option} {raw}: a model folder; pass it as hf:{raw} to run it in-process"
    if path.is_file() and _starts_with(path, GGUF_MAGIC):
        return f"{option} {raw}: a GGUF file; pass it as {GGUF_PREFIX}{raw} to run it on llama.cpp in this process"
    if path.exists():
        return f"{option} {raw}: not a run directory (no manifest.json there) and not a model spec; {_PASS_INSTEAD}"
    return f"{option} {raw}: no such run directory or model folder, and not a model spec; {_PASS_INSTEAD}"


def runs_on_llamacpp(given: str, recorded: str) -> bool:
    """True when ``given`` is a ``gguf:`` spec whose file holds the very weights ``recorded`` names (the embedded
    model's own GGUF for ``gemma-3-270m``): a run made on ``recorded`` runs as it was made, on llama.cpp, its LoRA
    adapter and prompt included."""
    given_spec, recorded_spec = parse_spec(given), parse_spec(recorded, "the run's model")
    return given_spec.kind == "gguf" and recorded_spec.kind == "embedded" and is_shipped_weights(given_spec.target)
