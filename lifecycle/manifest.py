"""A run's manifest.json: what it takes to reproduce and audit the run (command line, options, seeds, package
versions, git commit, sha256 of each data file, model specs), never a credential."""

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from smelt.errors import SmeltError
from smelt.programs.data_files import deepest_line, sha256_of_file
from smelt.redaction import scrub, scrub_argv

_PACKAGES = ("smelt", "dspy", "transformers", "torch", "peft", "optuna", "datasets", "numpy")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions




def data_fingerprints(sources: dict[str, str]) -> dict[str, dict]:
    """sha256 of each data file (hub ids and folders are recorded by name only)."""
    out = {}
    for split, source in sources.items():
        path = Path(source)
        out[split] = {"source": str(source), "sha256": sha256_of_file(path) if path.is_file() else None}
    return out


def build_manifest(*, command: str, task, options: dict, seed: int, models: dict, data_sources: dict,
                   program_options: dict | None = None, extra: dict | None = None) -> dict:
    """``task`` is a smelt.programs.task.Task: its name names the run, its source finds it again (a task file's
    or module's bytes are fingerprinted with the data)."""
    task_file = task.source.rpartition(":")[0] or task.source  # path.py:attr -> path.py; a .toml stays whole
    if task_file.endswith((".py", ".toml", ".yaml", ".yml")) and Path(task_file).is_file():
        data_sources = {**data_sources, "task_file": task_file}
    return {
        "command": command,
        "argv": scrub_argv(sys.argv),
        "task": task.name,
        "task_source": task.source,
        "options": scrub(options),
        "seed": seed,
        "program_options": program_options,
        "models": models,
        "data": data_fingerprints(data_sources),
        "versions": _versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }


def read_manifest(run_dir: str | Path, option: str | None = None) -> dict:
    """A run's manifest; ``option`` (--resume, --program, ...) is named when the folder is not a run."""
    path = Path(run_dir) / "manifest.json"
    named = f"{option} {run_dir}" if option else str(run_dir)
    if not Path(run_dir).is_dir():
        raise SmeltError(f"{named}: no such directory; pass a run directory, e.g. runs/<task>/<stamp>-compile "
                         "(each command prints the one it wrote)")
    if not path.is_file():
        raise SmeltError(f"{named}: not a smelt run directory (no manifest.json); pass runs/<task>/<run>")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SmeltError(f"{path}: not valid JSON ({exc}); a run's manifest is the JSON object smelt wrote") from None
    except RecursionError:
        raise SmeltError(f"{path}:{deepest_line(path.read_text(encoding='utf-8'))}: nested too deeply; a run's "
                         "manifest is the JSON object smelt wrote") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("command"), str):
        raise SmeltError(f"{path}: not a smelt manifest (expected a JSON object naming its command, got "
                         f"{type(manifest).__name__}); pass a run directory smelt wrote")
    return manifest
