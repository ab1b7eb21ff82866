"""Run directories: one per command, never overwritten, locked by the process writing them.

runs/<task>/<YYYYmmdd-HHMMSS>-<command>/
  manifest.json  program.json  eval/<split>.jsonl  summary.json  report.md  report.html
"""

import errno
import fcntl
import json
import os
import time
from pathlib import Path

from smelt.errors import SmeltError, filesystem_error
from smelt.lifecycle.manifest import read_manifest
from smelt.lifecycle.recorded_task import is_python_task

RUNS_ROOT = Path(os.environ.get("SMELT_RUNS", "runs"))
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


def enclosing_run(path: str | Path) -> Path | None:
    """The run directory ``path`` is, or lies in (a folder at or above it holds a manifest.json), after links are
    followed; None when it is in no run. Output options (``report --out``, ``serve --log``, ``bundle OUT_DIR``) ask
    it, because nothing but a run's own command writes into a run."""
    target = Path(path).expanduser().resolve()
    return next((folder for folder in (target, *target.parents) if (folder / "manifest.json").is_file()), None)


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
    except (OSError, ValueError, AttributeError, RecursionError):
        source = ""

    task = f" {source}" if isinstance(source, str) and source and is_python_task(source) else ""
    return f"python cli.py {command}{task} --resume {run_dir}"
