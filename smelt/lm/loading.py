"""Loading in-process models: the embedded model, hub checkpoints, local folders, LoRA adapters."""

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smelt.errors import SmeltError
from smelt.lm.devices import default_dtype, resolve_device
from smelt.lm.embedded import ensure_embedded_model
from smelt.lm.specs import ModelSpec


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    spec: ModelSpec
    device: str
    source: str  # the folder or hub id the weights came from
    adapter: str | None = None


_loaded: dict[tuple, LoadedModel] = {}
_load_lock = threading.Lock()


def load_model(spec: ModelSpec, *, device: str = "auto", adapter: str | Path | None = None) -> LoadedModel:
    """Load (once per process) the model a spec names, on the resolved device, with an optional adapter."""
    if not spec.in_process:
        raise ValueError(f"{spec.raw} is served by LiteLLM, not loaded in-process")
    device = resolve_device(device)
    key = (spec.kind, spec.target, device, str(Path(adapter).resolve()) if adapter else None)
    with _load_lock:
        if key not in _loaded:
            _loaded[key] = _load_uncached(spec, device, adapter)
        return _loaded[key]


def _load_uncached(spec: ModelSpec, device: str, adapter: str | Path | None) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(ensure_embedded_model()) if spec.kind == "embedded" else _resolve_hf_source(spec)
    local_only = Path(source).is_dir()

    def from_pretrained(cls, **kwargs):
        if local_only:
            return cls.from_pretrained(source, **kwargs)
        return _from_hub(cls, source, **kwargs)

    tokenizer = from_pretrained(AutoTokenizer)
    model = from_pretrained(AutoModelForCausalLM, dtype=default_dtype(device))
    model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter:
        model = attach_adapter(model, adapter, base_source=source)
    return LoadedModel(model, tokenizer, spec, device, source, str(adapter) if adapter else None)


def _resolve_hf_source(spec: ModelSpec) -> str:
    target = os.path.expanduser(spec.target)
    if Path(target).is_dir():
        return str(Path(target).resolve())
    looks_like_path = target.startswith((".", "/", "~")) or target.count("/") != 1 or os.sep + os.sep in target
    if looks_like_path:
        raise SmeltError(
            f"{spec.raw}: no such model folder {target!r}; pass an existing folder with config.json, "
            "or a hub id such as hf:Qwen/Qwen2.5-0.5B-Instruct"
        )
    return target


def _from_hub(cls, hub_id: str, **kwargs):
    """Prefer the local hub cache; reach the hub only when the model is not cached yet."""
    try:
        return cls.from_pretrained(hub_id, local_files_only=True, **kwargs)
    except OSError:
        pass
    try:
        return cls.from_pretrained(hub_id, **kwargs)
    except OSError as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise SmeltError(
            f"model {hub_id!r} is not in the local Hugging Face cache and could not be downloaded ({reason}); "
            f"download it on a connected machine with `huggingface-cli download {hub_id}` "
            "(run `huggingface-cli login` first for gated models such as Llama), or pass a local folder as hf:PATH"
        ) from exc


def attach_adapter(model, adapter: str | Path, *, base_source: str):
    """Attach a peft LoRA adapter folder (safetensors) to a loaded base model."""
    from peft import PeftModel

    folder = Path(adapter).expanduser()
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise SmeltError(f"--adapter {folder}: no adapter_config.json there; pass a LoRA adapter folder (peft)")
    if not (folder / "adapter_model.safetensors").is_file():
        raise SmeltError(f"--adapter {folder}: no adapter_model.safetensors there (smelt loads safetensors only)")
    recorded_base = json.loads(config_file.read_text()).get("base_model_name_or_path") or "unknown"
    try:
        peft_model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise SmeltError(
            f"--adapter {folder}: it does not fit the base model {base_source} (it was trained on {recorded_base}); "
            "load it with the student model it was distilled for"
        ) from exc
    peft_model.eval()
    return peft_model
