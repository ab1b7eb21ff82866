"""``bundle OUT_DIR``: everything smelt needs on an offline machine that has Python (and a CUDA PyTorch), in one folder.

    OUT_DIR/
      wheels/        smelt's wheel and its dependencies' for the target Python and platform; torch only with
                     --with-torch (a GPU box brings its own CUDA build)
      models/NAME/   the --model folders (the embedded model converted, a local transformers folder)
      install.sh     pip install --no-index from wheels/, then the imports checked and `smelt tasks` run
      SHA256SUMS     of the wheels, checked by install.sh first
      MANIFEST.json  what is inside: the target, every wheel (name, version, sha256, size), the models
      README.md      how to install and use it there

The bundle is assembled in a hidden sibling folder and renamed into place at the end, so OUT_DIR is never half
written; an existing, non-empty OUT_DIR is replaced only with --force. Which wheels, and how they are fetched:
``bundle_wheels``; the files smelt's own wheel is built from (those git tracks): ``bundle_source``; which model
folders: ``bundle_models``; the two text files: ``bundle_files``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from smelt.commands import bundle_wheels
from smelt.commands.bundle_files import install_script, readme
from smelt.commands.bundle_models import copy_model, find_models
from smelt.commands.output_folder import SOURCE, check_output_folder, replace_folder
from smelt.errors import SmeltError
from smelt.files import write_json, write_text


@dataclass(frozen=True)
class BundleOptions:
    out_dir: str
    python_version: str | None = None  # None: this interpreter's
    platform: str | None = None  # None: this machine's
    with_torch: bool = False
    models: tuple[str, ...] = field(default_factory=tuple)  # model specs: gemma-3-270m, hf:<folder>, a cached hub model
    force: bool = False


@dataclass(frozen=True)
class BundleOutcome:
    out_dir: Path
    wheels: int
    wheel_bytes: int
    model_bytes: int
    left_out: tuple[str, ...]  # packages resolved but not bundled (torch and what only it needs)

    def describe(self) -> str:
        models = f" + models {human_size(self.model_bytes)}" if self.model_bytes else ""
        total = human_size(self.wheel_bytes + self.model_bytes)
        return (f"bundle: {self.out_dir}: {self.wheels} wheels ({human_size(self.wheel_bytes)}){models} = {total}; "
                f"install there with: bash {self.out_dir}/install.sh [PYTHON]")


def make_bundle(options: BundleOptions, log=print) -> BundleOutcome:
    """Build the bundle: check everything, then wheels, models and the text files into a hidden sibling of OUT_DIR,
    renamed into place at the end. A disk that fails there (read-only, full) is one line that advises another
    OUT_DIR."""
    out = Path(options.out_dir).expanduser().resolve()
    try:
        return _make(options, out, log)
    except OSError as exc:
        error = _disk_error(exc, out)
        if error is None:
            raise
        raise error from exc


def _make(options: BundleOptions, out: Path, log) -> BundleOutcome:
    started = time.perf_counter()
    target = bundle_wheels.Target(options.python_version, options.platform)
    models = find_models(options.models)  # a wrong --model fails before anything is fetched
    out = check_output_folder(out, options.force, what="a bundle", example="smelt-bundle")
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        wheels_dir = work / "wheels"
        wheels_dir.mkdir(parents=True)
        smelt_wheel = bundle_wheels.build_smelt_wheel(SOURCE, wheels_dir, log)
        resolved = bundle_wheels.resolve(smelt_wheel, target, with_torch=options.with_torch, log=log)
        kept = bundle_wheels.needed(resolved, target, with_torch=options.with_torch)
        left_out = tuple(sorted(item.name for item in resolved if item not in kept))
        if left_out:
            log(f"[smelt] left out (the machine's PyTorch brings them): {', '.join(left_out)}")
        bundle_wheels.download([item for item in kept if item.name != "smelt"], wheels_dir, target, log)
        model_bytes = sum(copy_model(model, work / "models", log) for model in models)
        wheels = _describe_wheels(wheels_dir)
        _write_files(work, options, target, models, wheels, smelt_wheel, model_bytes, left_out)
        replace_folder(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"[smelt] bundle written in {time.perf_counter() - started:.0f} s")
    return BundleOutcome(out, len(wheels), sum(w["bytes"] for w in wheels), model_bytes, left_out)


# What a user can do about each file-system error met while writing the bundle (errors.py's advice is for runs).
_OUT_DIR_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space, or give an OUT_DIR on another disk",
    errno.EDQUOT: "the disk quota is used up: free some space, or give an OUT_DIR on another disk",
    errno.EFBIG: "the file grew past what the file system allows: give an OUT_DIR on another disk",
    errno.EROFS: "the file system is read-only: give an OUT_DIR on a writable disk",
    errno.EACCES: "no permission to write there: give an OUT_DIR in a folder you may write to",
    errno.EPERM: "the operation is not permitted there: give an OUT_DIR in a folder you may write to",
    errno.ENOTDIR: "a part of that path is a file, not a folder: give another OUT_DIR",
    errno.ENAMETOOLONG: "the path is too long: give a shorter OUT_DIR",
    errno.EIO: "the disk reported an input/output error: check the disk, or give an OUT_DIR on another one",
}


def _disk_error(exc: OSError, out: Path) -> SmeltError | None:
    """A disk's error as one line naming the path, with advice about OUT_DIR where the path is OUT_DIR's (the folder,
    one above it, or a hidden sibling the bundle is assembled in) or unnamed. None for any other OSError."""
    if exc.errno not in _OUT_DIR_ADVICE:
        return None
    reason = f"{os.strerror(exc.errno)} ({errno.errorcode[exc.errno]}); {_OUT_DIR_ADVICE[exc.errno]}"
    if exc.filename is None:  # a write that failed part-way names no file: nearly all of them go under OUT_DIR
        return SmeltError(f"writing the bundle in {out}: {reason}")
    ours = any(_under_out_dir(name, out) for name in (exc.filename, exc.filename2) if name is not None)
    also = f" (and {exc.filename2})" if exc.filename2 else ""
    return SmeltError(f"{exc.filename}{also}: " + (reason if ours else reason.split(";")[0]))


def _under_out_dir(name, out: Path) -> bool:
    path = Path(os.path.abspath(os.fsdecode(name)))
    first = path.relative_to(out.parent).parts[:1] if path.is_relative_to(out.parent) else ()
    return path in out.parents or any(part == out.name or part.startswith(f".{out.name}.") for part in first)


def _describe_wheels(wheels_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(wheels_dir.glob("*.whl")):
        name, version = path.name.split("-")[:2]
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        rows.append({"file": path.name, "name": name, "version": version, "sha256": digest.hexdigest(),
                     "bytes": path.stat().st_size})
    return rows


def _write_files(work: Path, options: BundleOptions, target, models, wheels: list[dict], smelt_wheel: Path,
                 model_bytes: int, left_out: tuple[str, ...]) -> None:
    version = smelt_wheel.name.split("-")[1]
    wheel_bytes = sum(w["bytes"] for w in wheels)
    write_text(work / "SHA256SUMS", "".join(f"{w['sha256']}  {w['file']}\n" for w in wheels))
    script = work / "install.sh"
    write_text(script, install_script(python=target.python, version=version, with_torch=options.with_torch,
                                      models=models))
    script.chmod(0o755)
    write_text(work / "README.md", readme(python=target.python, where=target.describe(), version=version,
                                          with_torch=options.with_torch, models=models, wheels=len(wheels),
                                          size=human_size(wheel_bytes + model_bytes)))
    write_json(work / "MANIFEST.json", {
        "smelt_bundle": 1,
        "smelt_version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": {"python_version": target.python, "platform": target.platform or "this machine's"},
        "with_torch": options.with_torch,
        "left_out": list(left_out),
        "wheels": wheels,
        "models": [{"spec": m.spec, "folder": f"models/{m.name}", "use_as": m.use_as()} for m in models],
        "bytes": {"wheels": wheel_bytes, "models": model_bytes, "total": wheel_bytes + model_bytes},
    })


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
