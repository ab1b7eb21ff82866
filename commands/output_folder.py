"""An output folder a command fills outside the runs (``bundle OUT_DIR``, ``export OUT``): checked before any work,
written as a hidden sibling, put in place whole at the end."""

import os
import shutil
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lifecycle import enclosing_run

SOURCE = Path(__file__).resolve().parent.parent  # smelt's checkout (or its installed package folder)


def check_output_folder(out: Path, force: bool, *, what: str, example: str) -> Path:
    """``out`` resolved, if it may take the output: new or empty; an existing non-empty folder only with ``force``,
    and never a folder in a run, one that holds a run, the current directory, the home folder or smelt's checkout.
    ``what`` names the output in messages ("a bundle"), ``example`` a folder name to suggest."""
    out = out.expanduser().resolve()
    run = enclosing_run(out)
    if run is not None:
        raise SmeltError(f"{out} is inside run {run}, and {what} never writes into a run directory; give a folder "
                         f"outside the runs (e.g. {example})")
    if out.exists() and not out.is_dir():
        raise SmeltError(f"{out} is a file; give a folder for {what}")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise SmeltError(f"{out} exists and is not empty; give a new folder, or pass --force to replace it")
        for precious in (Path.cwd(), Path.home(), SOURCE):
            if precious.resolve().is_relative_to(out):
                raise SmeltError(f"--force would replace {out}, which holds {precious.resolve()}; give another folder")
        held = next(out.rglob("manifest.json"), None)
        if held is not None:
            raise SmeltError(f"--force would replace {out}, which holds run {held.parent}; give another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def work_folder(out: Path) -> Path:
    """The hidden, empty sibling of ``out`` the output is written into first."""
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def replace_folder(work: Path, out: Path) -> None:
    """Put the finished ``work`` folder at ``out``; an old one there (checked by ``check_output_folder``) goes only
    once the new one is in place."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(work, out)
    shutil.rmtree(old, ignore_errors=True)
