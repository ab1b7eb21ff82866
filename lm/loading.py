"""Loading in-process models: the embedded model, hub checkpoints, local folders, LoRA adapters."""

import json
import os
import threading
import warnings
from contextlib import contextmanager
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
    dtype: str = "float32"
    adapter: str | None = None


_loaded: dict[tuple, LoadedModel] = {}
_load_lock = threading.Lock()


def load_model(spec: ModelSpec, *, device: str = "auto", adapter: str | Path | None = None,
               dtype=None) -> LoadedModel:
    """Load (once per process) the model a spec names, on the resolved device, with an optional adapter.

    ``dtype`` (a torch dtype) defaults to the device's inference dtype (``devices.default_dtype``)."""
    if not spec.in_process:
        raise ValueError(f"{spec.raw} is served by LiteLLM, not loaded in-process")
    device = resolve_device(device)
    if adapter:
        adapter_folder(adapter)  # a bad adapter path fails before the base model is read
    dtype = dtype or default_dtype(device)
    key = (spec.kind, spec.target, device, dtype, str(Path(adapter).resolve()) if adapter else None)
    with _load_lock:
        if key not in _loaded:
            _loaded[key] = _load_uncached(spec, device, dtype, adapter)
        return _loaded[key]


def _load_uncached(spec: ModelSpec, device: str, dtype, adapter: str | Path | None) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(ensure_embedded_model()) if spec.kind == "embedded" else _resolve_hf_source(spec)
    local_only = Path(source).is_dir()

    def from_pretrained(cls, **kwargs):
        if local_only:
            return cls.from_pretrained(source, **kwargs)
        return _from_hub(cls, source, **kwargs)

    tokenizer = from_pretrained(AutoTokenizer)
    model = from_pretrained(AutoModelForCausalLM, dtype=dtype)
    model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter:
        model = attach_adapter(model, adapter, base_source=source)
    return LoadedModel(model, tokenizer, spec, device, source, dtype=str(dtype).removeprefix("torch."),
                       adapter=str(adapter) if adapter else None)


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
            f"download it on a connected machine with `hf download {hub_id}` "
            "(run `hf auth login` first for gated models such as Llama), or pass a local folder as hf:PATH"
        ) from exc


def adapter_folder(adapter: str | Path) -> Path:
    """The adapter folder, if it holds a peft adapter in safetensors; otherwise say what is missing."""
    folder = Path(adapter).expanduser()
    if not folder.is_dir():
        raise SmeltError(f"--adapter {folder}: no such folder; pass the folder a distill run saved its adapter to")
    if not (folder / "adapter_config.json").is_file():
        raise SmeltError(f"--adapter {folder}: no adapter_config.json there; pass a LoRA adapter folder (peft)")
    if not (folder / "adapter_model.safetensors").is_file():
        raise SmeltError(f"--adapter {folder}: no adapter_model.safetensors there (smelt loads safetensors only)")
    return folder


@contextmanager
def peft_quietly():
    """peft reads a transformers property that warns it is renamed: nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def attach_adapter(model, adapter: str | Path, *, base_source: str):
    """Attach a peft LoRA adapter folder (safetensors) to a loaded base model."""
    from peft import PeftModel

    folder = adapter_folder(adapter)
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        message = f"--adapter {folder}/adapter_config.json is not valid JSON ({exc}); save the adapter again"
        raise SmeltError(message) from exc
    recorded_base = (config.get("base_model_name_or_path") if isinstance(config, dict) else None) or "unknown"
    try:
        with peft_quietly():
            peft_model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise SmeltError(_misfit(folder, base_source, recorded_base)) from exc
    # peft accepts an adapter that covers only some of the modules it targets (it warns and leaves the rest
    # untouched), so an adapter from a shallower model with matching shapes would load silently.
    saved = _lora_modules(_safetensors_keys(folder / "adapter_model.safetensors"))
    injected = _lora_modules(name for name, _ in peft_model.named_parameters())
    if saved != injected:
        detail = f"it has LoRA weights for {len(saved)} modules, this base model takes {len(injected)}"
        raise SmeltError(_misfit(folder, base_source, recorded_base, detail))
    peft_model.eval()
    return peft_model


def _misfit(folder: Path, base_source: str, recorded_base: str, detail: str = "") -> str:
    return (
        f"--adapter {folder}: it does not fit the base model {base_source} (it was trained on {recorded_base}"
        f"{'; ' + detail if detail else ''}); load it with the student model it was distilled for"
    )


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def _lora_modules(names) -> set[str]:
    """The modules that parameter names put LoRA weights on: ``...q_proj.lora_A.default.weight`` -> ``...q_proj``."""
    return {name.split(".lora_", 1)[0] for name in names if ".lora_" in name}


def unload_models() -> None:
    """Forget every model loaded in this process (after training changed one, the next load is fresh)."""
    with _load_lock:
        _loaded.clear()


def parameter_megabytes(model) -> float:
    """Memory held by a model's parameters and buffers, in MB."""
    tensors = [*model.parameters(), *model.buffers()]
    return round(sum(t.numel() * t.element_size() for t in tensors) / 2**20, 1)
