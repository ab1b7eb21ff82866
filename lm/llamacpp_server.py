"""llama.cpp's own server, run inside this process from the ``xllamacpp`` wheel, for ``gguf:`` models.

``xllamacpp.Server`` starts llama.cpp's native C++ server (continuous batching over parallel slots, the prompt
cache, LoRA adapters chosen per request) on threads of this process and serves its OpenAI-compatible HTTP routes on
``listening_address``. smelt starts one per model file (and adapter set) per process, on 127.0.0.1 on a port the
system picks, with a random key of this process's own so that no other local program can use it, and stops it when
the process exits. Requests reach it through ``completion_engine``, exactly as they reach a server the user runs.
"""

import atexit
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from smelt.errors import SmeltError
from smelt.redaction import register_secret

# Requests decoded together (llama.cpp's slots: as many as --threads keeps in flight by default; more wait their
# turn), and each slot's context (capped by the model's own). The KV cache is allocated for every slot at start:
# 8 x 8192 tokens take about 0.3 GiB for Gemma 3 270M (3 of its 18 layers attend globally, the others over a
# 512-token window).
PARALLEL_SLOTS = 8
CONTEXT_PER_SLOT = 8192
# The prompt cache in host memory (llama.cpp keeps slots' states there to reuse them): its default, 8 GiB, is more
# than a small model's whole process.
PROMPT_CACHE_MIB = 512


@dataclass
class LlamaCppServer:
    """A started server: ``url`` is its OpenAI-compatible base (``…/v1``), ``api_key`` the key it takes,
    ``adapters`` the GGUF LoRA files it loaded (a request names one by its index, ``adapter_request``)."""

    gguf: Path
    adapters: tuple[Path, ...]
    url: str
    api_key: str
    device: str  # "cpu", or "gpu" where the wheel has a GPU backend and layers are offloaded
    slots: int
    _server: object = field(repr=False)

    def adapter_request(self, adapter: Path | None) -> dict:
        """The request fields that apply ``adapter`` (one of ``adapters``) at full scale, or none of them (llama.cpp
        leaves the adapters a request does not name at scale 0). With several adapters loaded, the request also turns
        llama.cpp's prompt cache off: it reuses a prompt computed under another adapter as if it were this one's
        (ggml-org/llama.cpp#26207), which moves the answer."""
        if adapter is None:
            return {}
        chosen = {"lora": [{"id": self.adapters.index(adapter), "scale": 1.0}]}
        return {**chosen, "cache_prompt": False} if len(self.adapters) > 1 else chosen

    def close(self) -> None:
        """Stop the server: its threads end and its port closes (xllamacpp stops it when the object goes)."""
        self._server = None


_servers: dict[tuple, LlamaCppServer] = {}
_servers_lock = threading.Lock()


def server_for(gguf: Path, *, context_length: int, adapters: tuple[Path, ...] = (), device: str = "auto",
               slots: int = PARALLEL_SLOTS) -> LlamaCppServer:
    """The server of ``gguf`` with ``adapters`` loaded (not applied unless a request asks), started on first use
    and shared by every later caller in this process. A server already started on ``gguf`` with these adapters among
    others serves too (not a caller without adapters, whose prompts must not share its cache): ``serve`` of several
    runs starts one with every run's adapter, and each run's model then finds it (one copy of the base).
    ``device``: cpu keeps every layer on the CPU; otherwise llama.cpp offloads what fits to a GPU where the installed
    wheel has a GPU backend."""
    key = (str(gguf), tuple(str(a) for a in adapters), _gpu_layers(device))
    with _servers_lock:
        if key not in _servers:
            wider = next((server for (file, loaded, layers), server in _servers.items()
                          if adapters and (file, layers) == (key[0], key[2]) and set(key[1]) <= set(loaded)), None)
            _servers[key] = wider or _start(gguf, adapters, device, slots, context_length)
        return _servers[key]


def close_servers() -> None:
    """Stop every server this process started (also run at exit)."""
    with _servers_lock:
        started = list(_servers.values())
        _servers.clear()
    for server in started:
        server.close()


atexit.register(close_servers)


def _start(gguf: Path, adapters: tuple[Path, ...], device: str, slots: int, context_length: int) -> LlamaCppServer:
    xllamacpp = _xllamacpp()
    if device.strip().lower().startswith("cuda") and not _has_gpu(xllamacpp):
        raise SmeltError(f"--device {device}: the installed xllamacpp wheel runs llama.cpp on the CPU only; use "
                         "--device cpu, or install its CUDA wheel (`pip install xllamacpp --force-reinstall "
                         "--index-url https://xorbitsai.github.io/xllamacpp/whl/cu128`)")
    per_slot = min(CONTEXT_PER_SLOT, context_length) if context_length > 0 else CONTEXT_PER_SLOT
    api_key = secrets.token_urlsafe(24)
    register_secret(api_key)
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the system picks a free port; listening_address names it
    params.api_keys = [api_key]
    params.n_parallel = slots
    params.n_ctx = slots * per_slot
    params.cont_batching = True
    params.cache_prompt = True
    params.cache_ram_mib = PROMPT_CACHE_MIB
    params.ui = False
    params.verbosity = -1  # llama.cpp logs every request on stderr otherwise
    params.n_gpu_layers = _gpu_layers(device)
    if adapters:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(adapter), 1.0) for adapter in adapters]
        params.lora_init_without_apply = True  # scale 0 until a request names the adapter
    try:
        server = xllamacpp.Server(params)
    except RuntimeError:
        loaded = f" with the LoRA adapter {', '.join(map(str, adapters))}" if adapters else ""
        raise SmeltError(f"gguf:{gguf}: llama.cpp could not load it{loaded} (a model architecture this xllamacpp "
                         "does not know, an adapter made for other weights, or too little memory)") from None
    address = server.listening_address.rstrip("/")
    # Answering once also settles its listening thread: a server stopped before any request (on a port the system
    # chose) waited for that thread forever.
    httpx.get(f"{address}/health", timeout=60).raise_for_status()
    return LlamaCppServer(gguf, adapters, f"{address}/v1", api_key,
                          "cpu" if params.n_gpu_layers == 0 or not _has_gpu(xllamacpp) else "gpu", slots, server)


def _gpu_layers(device: str) -> int:
    return 0 if (device or "auto").strip().lower() == "cpu" else -1  # -1: llama.cpp offloads what fits


def _has_gpu(xllamacpp) -> bool:
    kinds = xllamacpp.ggml_backend_dev_type
    gpus = (kinds.GGML_BACKEND_DEVICE_TYPE_GPU, kinds.GGML_BACKEND_DEVICE_TYPE_IGPU)
    return any(d.get("type") in gpus for d in xllamacpp.get_device_info())


def _xllamacpp():
    try:
        import xllamacpp
    except ImportError:
        raise SmeltError("gguf: models run on llama.cpp from the xllamacpp package, which is not installed; "
                         "`pip install xllamacpp` (it is a dependency of smelt)") from None
    return xllamacpp
