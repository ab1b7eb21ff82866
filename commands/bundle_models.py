"""The model folders of a bundle (``bundle --model SPEC``): found on this machine, never downloaded.

- ``gemma-3-270m``: the embedded model's converted transformers folder (converted now if it is not yet), so the
  offline machine skips the conversion; ``install.sh`` puts it where smelt looks for it.
- ``hf:<folder>``: a local transformers folder, copied as it is.
- ``hf:<hub id>`` or an alias (``llama-3.2-3b``): the copy in the local Hugging Face cache, if there is one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lm.embedded import EMBEDDED_SPEC, ensure_embedded_model
from smelt.lm.specs import parse_spec


@dataclass(frozen=True)
class BundledModel:
    spec: str  # as given with --model
    name: str  # its folder under models/
    source: Path | None  # None: the embedded model, converted when it is copied
    embedded: bool = False

    def use_as(self, bundle_dir: str = "BUNDLE") -> str:
        """The model spec that names it on the offline machine."""
        return EMBEDDED_SPEC if self.embedded else f"hf:{bundle_dir}/models/{self.name}"


def find_models(specs: tuple[str, ...] | list[str]) -> list[BundledModel]:
    """Each --model SPEC as a folder on this machine; a spec that names none is one line saying what to do."""
    models: list[BundledModel] = []
    for spec in specs:
        model = _find(spec)
        taken = {m.name for m in models}
        name, n = model.name, 2
        while name in taken:  # two folders with the same name: models/NAME and models/NAME-2
            name, n = f"{model.name}-{n}", n + 1
        models.append(BundledModel(model.spec, name, model.source, model.embedded))
    return models


def _find(spec: str) -> BundledModel:
    parsed = parse_spec(spec, "--model")
    if parsed.kind == "embedded":
        return BundledModel(spec, EMBEDDED_SPEC, None, embedded=True)
    if parsed.kind == "litellm":
        raise SmeltError(f"--model {spec}: a server's model has no weights here to bundle; give {EMBEDDED_SPEC}, "
                         "hf:<local folder>, or a hub model already downloaded (hf:<hub id> or an alias)")
    folder = Path(parsed.target).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise SmeltError(f"--model {spec}: {folder} has no config.json; give a transformers model folder")
        return BundledModel(spec, folder.resolve().name, folder.resolve())
    if parsed.target.startswith((".", "/", "~")):
        raise SmeltError(f"--model {spec}: no folder {folder}")
    return BundledModel(spec, parsed.target.replace("/", "--"), _hub_cache_copy(spec, parsed.target))


def _hub_cache_copy(spec: str, hub_id: str) -> Path:
    """The local Hugging Face cache's snapshot of a hub model, without touching the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise SmeltError(f"--model {spec}: {hub_id} is not in the local Hugging Face cache, and bundle downloads "
                         f"nothing; download it first (`hf download {hub_id}`), or give hf:<local folder>") from None


def copy_model(model: BundledModel, models_dir: Path, log) -> int:
    """Copy the model's folder into ``models_dir/NAME`` (files, not links); returns its size in bytes."""
    source = model.source or ensure_embedded_model(log=log)
    target = models_dir / model.name
    log(f"[smelt] copying {model.spec} ({source}) ...")
    shutil.copytree(source, target, symlinks=False, ignore=shutil.ignore_patterns(".cache", "*.partial-*"))
    return sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
