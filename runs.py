"""Run directories: one per command, never overwritten, everything needed to reproduce and audit it.

runs/<task>/<YYYYmmdd-HHMMSS>-<command>/
  manifest.json  program.json  eval/<split>.jsonl  summary.json  report.md
"""

import errno
import fcntl
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from smelt.errors import SmeltError, filesystem_error
from smelt.programs.datasets import sha256_of_file
from smelt.redaction import scrub, scrub_argv

RUNS_ROOT = Path(os.environ.get("SMELT_RUNS", "runs"))
_PACKAGES = ("smelt", "dspy", "transformers", "torch", "peft", "optuna", "datasets", "numpy")
LOCK_FILE = ".lock"
_held_locks: dict[Path, int] = {}  # run directory -> open file descriptor holding its lock, for the process's life
# The run this process is writing, for the Ctrl-C note: (command, run directory).
active_run: tuple[str, Path] | None = None


def new_run_dir(task: str, command: str, root: Path | None = None) -> Path:
    """Create a fresh run directory; a second run in the same second gets a numbered suffix."""
    base = Path(root or RUNS_ROOT) / task
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        path = base / f"{stamp}-{command}{suffix}"
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        (path / "eval").mkdir()
        return path
    raise SmeltError(f"could not create a run directory under {base}")


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
    if not isinstance(manifest, dict) or not isinstance(manifest.get("command"), str):
        raise SmeltError(f"{path}: not a smelt manifest (expected a JSON object naming its command, got "
                         f"{type(manifest).__name__}); pass a run directory smelt wrote")
    return manifest


def runs_root(root: str | Path | None = None) -> Path:
    return Path(root) if root else RUNS_ROOT


def latest_run(command: str, *, task: str | None = None, root: str | Path | None = None) -> Path | None:
    """The most recent finished run of ``command`` (of ``task``, if given) under the runs root, or None.

    Run directories are named ``<YYYYmmdd-HHMMSS>-<command>[-N]``, so their names sort by start time."""
    base = runs_root(root)
    task_dirs = [base / task] if task else sorted(p for p in base.glob("*") if p.is_dir())
    found = [run for folder in task_dirs for run in folder.glob(f"*-{command}*")
             if (run / "manifest.json").is_file() and (run / "program.json").is_file()]
    return max(found, key=lambda run: run.name, default=None)


def check_runs_root(root: str | Path | None = None, resume: str | Path | None = None) -> None:
    """Fail in a moment, before any model loads, where the run could not be written: the runs root (or the run
    being resumed) is a file, or its nearest existing folder is read-only or not writable for this user."""
    base = (Path(resume) if resume else runs_root(root)).absolute()
    if base.exists() and not base.is_dir():
        raise filesystem_error(OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(base)))
    existing = next((folder for folder in (base, *base.parents) if folder.exists()), None)
    if existing is None or os.access(existing, os.W_OK | os.X_OK):
        return
    read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
    code = errno.EROFS if read_only else errno.EACCES
    raise filesystem_error(OSError(code, os.strerror(code), str(existing)))


def open_run_dir(task: str, command: str, *, resume: str | None = None, root: str | None = None) -> Path:
    """A new run directory, or with --resume the given one after checking it is a run of the same kind;
    either way locked for this process (``lock_run_dir``) and noted as the run a Ctrl-C should name."""
    global active_run
    if not resume:
        run_dir = new_run_dir(task, command, runs_root(root))
    else:
        run_dir = Path(resume)
        manifest = read_manifest(run_dir, "--resume")
        if manifest.get("command") != command or manifest.get("task") != task:
            raise SmeltError(f"--resume {run_dir}: that is a {manifest.get('command')} run of "
                             f"{manifest.get('task')}, not a {command} run of {task}")
        (run_dir / "eval").mkdir(exist_ok=True)  # removed by hand: the run goes on from what else it kept
    lock_run_dir(run_dir)
    active_run = (command, run_dir)
    return run_dir


def lock_run_dir(run_dir: Path) -> None:
    """Hold ``run_dir/.lock`` until this process ends, so two processes never write one run (``flock``: the lock
    goes with the process, even when it is killed)."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held_locks:
        return
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SmeltError(f"{run_dir}: another smelt process (pid {holder}) is writing this run; wait for it to end "
                         "or stop it, then try again") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    except OSError as exc:  # a full disk: named like every other write of the run
        os.close(fd)
        raise OSError(exc.errno, exc.strerror, str(run_dir / LOCK_FILE)) from None
    _held_locks[run_dir] = fd


def drop_resume_hint() -> None:
    """This process's run cannot be continued by --resume (a sweep whose every trial failed by its own error): an
    error from here on offers no resume command."""
    global active_run
    active_run = None


def resume_hint() -> str | None:
    """The command that continues the run this process was writing, if any (naming a Python task, which a resume
    never imports by itself)."""
    if active_run is None:
        return None
    return resume_command(*active_run)


def resume_command(command: str, run_dir: Path) -> str:
    """``python cli.py COMMAND --resume RUN_DIR``, with the task in front where it is Python code (which a resume
    imports only when the user names it)."""
    try:
        source = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8")).get("task_source") or ""
    except (OSError, ValueError, AttributeError):
        source = ""
    from smelt.recorded_task import is_python_task

    task = f" {source}" if isinstance(source, str) and source and is_python_task(source) else ""
    return f"python cli.py {command}{task} --resume {run_dir}"
