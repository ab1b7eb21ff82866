"""The task a run was made for, found again from its manifest without running code.

A manifest is data: it may name a shipped task or a task file (both data, loaded as they are), but a Python task
(``path.py:task``, ``package.module:task``) is code, and a run directory never runs code by itself. Such a run is
loaded only when the user names the task on the command line. Either way, a task file or Python file must be the
one the run was made with: the manifest records its sha256.
"""

from pathlib import Path

from smelt.errors import SmeltError
from smelt.lifecycle.manifest import read_manifest
from smelt.programs.data_files import sha256_of_file
from smelt.programs.registry import TASK_FILE_SUFFIXES, Task, get_task, shipped_tasks


def is_python_task(source: str) -> bool:
    """``path.py:attr`` or ``module:attr``: a task defined by code, not by smelt or a task file."""
    return source not in shipped_tasks() and not source.lower().endswith(TASK_FILE_SUFFIXES) and ":" in source


def python_task_source(run_dir: str | Path, option: str) -> str | None:
    """The TASK of a run (a sweep's best trial for a sweep) when that task is Python code, which a run directory
    never imports by itself: the caller then asks the user to name it. None for a shipped task or a task file."""
    path, manifest = Path(run_dir), read_manifest(run_dir, option)
    if manifest.get("command") == "sweep" and (path / "best" / "manifest.json").is_file():
        manifest = read_manifest(path / "best")
    source = manifest.get("task_source") or manifest.get("task")
    return source if isinstance(source, str) and is_python_task(source) else None


def recorded_task_spec(manifest: dict, run_dir: str | Path, *, command: str, option: str) -> str:
    """The TASK a run was made for, as ``get_task`` takes it; refused, with the command line that works, when it
    is Python code, which only the user may choose to run. ``option`` is what precedes the run directory there
    (``--program``, ``--resume``, ``--student X --teacher``)."""
    source = manifest.get("task_source") or manifest.get("task")
    if not isinstance(source, str) or not source:
        raise SmeltError(f"{Path(run_dir) / 'manifest.json'}: names no task; it is not a manifest smelt wrote")
    if is_python_task(source):
        raise SmeltError(f"{run_dir}: its task is Python code ({source}), which a run directory never runs by itself; "
                         f"give it as TASK to run it: python cli.py {command} {source} {option} {run_dir}")
    return source


def task_of_run(manifest: dict, run_dir: str | Path, *, given: str | None, command: str, option: str) -> Task:
    """The run's task: TASK as the user gave it (which must be the run's), else the recorded one if it is data.
    Its file, if any, must be byte-identical to the one the run recorded."""
    recorded_name = manifest.get("task")
    spec = given if given is not None else recorded_task_spec(manifest, run_dir, command=command, option=option)
    check_task_unchanged(spec, manifest, run_dir)  # before it is parsed: an edited file may not parse any more
    if given is not None:
        task = get_task(given)  # the user's own choice: a Python task may run
        if recorded_name and task.name != recorded_name:
            raise SmeltError(f"{option} {run_dir}: a run of task {recorded_name}, not {task.name}; use "
                             f"`{manifest.get('task_source') or recorded_name}` as the task or pick a {task.name} run")
    else:
        task = get_task(spec)
    return task


def check_task_unchanged(spec: str, manifest: dict, run_dir: str | Path) -> None:
    """A task file (or Python file) edited since the run would reload the run's program into other fields."""
    recorded = ((manifest.get("data") or {}).get("task_file") or {}) if isinstance(manifest.get("data"), dict) else {}
    digest = recorded.get("sha256") if isinstance(recorded, dict) else None
    task_file = spec if spec.lower().endswith(TASK_FILE_SUFFIXES) else spec.rpartition(":")[0]
    if not digest or not task_file.endswith((".py", *TASK_FILE_SUFFIXES)) or not Path(task_file).is_file():
        return
    if sha256_of_file(task_file) != digest:
        raise SmeltError(f"{task_file} changed since {run_dir} was made (its sha256 differs from the one in "
                         "manifest.json); restore the file as it was, or make a new run with it")
