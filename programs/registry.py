"""Finding a task from what the user typed as TASK.

- a shipped task's name (`doc_qa`): any module in smelt/programs/ with a module-level ``task = Task(...)``;
- ``path/to/my_task.py:task`` or ``package.module:task``: a Task (or a function returning one) outside smelt;
- ``my_task.toml`` (or .yaml/.yml): a task file, no Python (smelt.programs.task_file).
"""

import importlib
import importlib.util
import pkgutil
import re
import sys
from functools import cache
from pathlib import Path

import smelt.programs
from smelt.errors import SmeltError
from smelt.programs.task import Task
from smelt.programs.task_file import load_task_file

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TASK_FILE_SUFFIXES = (".toml", ".yaml", ".yml")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a task name is a folder under runs/
_FORMS = "a shipped task (see `cli.py tasks`), path/to/my_task.py:task, package.module:task, or a task file (.toml)"


@cache
def shipped_tasks() -> dict[str, Task]:
    """Every task defined by a module of smelt.programs, by name."""
    found: dict[str, Task] = {}
    for module_info in pkgutil.iter_modules(smelt.programs.__path__):
        module = importlib.import_module(f"smelt.programs.{module_info.name}")
        task = getattr(module, "task", None)
        if isinstance(task, Task):
            found[task.name] = _with_source(task, task.name)
    return dict(sorted(found.items()))


# Tasks already resolved in this process: a command's layers (the CLI's option check, the resume check, the
# recipe) all ask for TASK, and it is read and checked once. A task file is read again once its bytes change.
_resolved: dict[tuple, Task] = {}


def get_task(spec: str) -> Task:
    """The task TASK names, in any of the three forms; an unknown one is a one-line error listing the forms."""
    spec = str(spec).strip()
    if spec.lower().endswith(TASK_FILE_SUFFIXES):
        return _once(("file", spec, _stat(spec)), lambda: _checked(load_task_file(spec), spec))
    if ":" in spec and not Path(spec).exists():
        target, _, attribute = spec.rpartition(":")
        return _once(("python", spec), lambda: _checked(_from_python(target, attribute, spec), spec))
    tasks = shipped_tasks()
    if spec in tasks:
        return tasks[spec]
    if spec.endswith(".py"):
        raise SmeltError(f"TASK {spec}: name the task object too, e.g. {spec}:task")
    raise SmeltError(f"unknown task {spec!r}; shipped tasks: {', '.join(tasks)}. TASK is {_FORMS}")


def _once(key: tuple, resolve) -> Task:
    if key not in _resolved:
        _resolved[key] = resolve()
    return _resolved[key]


def _stat(path: str) -> tuple | None:
    """What tells an edited task file from the one read before (None: not there; load_task_file names that)."""
    try:
        found = Path(path).expanduser().resolve().stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


def _from_python(target: str, attribute: str, spec: str) -> Task:
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise SmeltError(f"TASK {spec}: no such file {target}")
        module_name = f"smelt_user_task_{abs(hash(str(path))):x}"
        module = sys.modules.get(module_name)
        if module is None:
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module  # dataclasses look their module up while the file runs
            try:
                module_spec.loader.exec_module(module)
            except SmeltError:
                raise
            except Exception as exc:
                del sys.modules[module_name]
                raise SmeltError(f"TASK {spec}: importing {target} failed ({type(exc).__name__}: {exc})") from exc
        source = f"{path}:{attribute}"
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise SmeltError(f"TASK {spec}: cannot import module {target!r} ({exc}); is it on PYTHONPATH?") from exc
        source = spec
    if not hasattr(module, attribute):
        raise SmeltError(f"TASK {spec}: {target} defines no {attribute!r}")
    found = getattr(module, attribute)
    if callable(found) and not isinstance(found, Task):
        try:
            found = found()
        except SmeltError:
            raise
        except Exception as exc:
            raise SmeltError(f"TASK {spec}: calling {attribute}() failed ({type(exc).__name__}: {exc})") from exc
    if not isinstance(found, Task):
        raise SmeltError(f"TASK {spec}: {attribute} is a {type(found).__name__}, not a smelt.programs.task.Task")
    return _with_source(found, source)


def _with_source(task: Task, source: str) -> Task:
    from dataclasses import replace

    return replace(task, source=source)


def _checked(task: Task, spec: str) -> Task:
    if not _SAFE_NAME.match(task.name):
        raise SmeltError(f"TASK {spec}: task name {task.name!r} must be letters, digits, _ . or - "
                         "(it names a folder under runs/)")
    return task
