"""``--resume RUN_DIR``: a run continues with the options it was started with, read back from its manifest.

Lines already written (``eval/*.jsonl``, ``sft.jsonl``, checkpoints) were computed under those options, so a
resumed run must not mix in others: a flag given again must agree with the recorded value. Only options that
change how the work is done, not what it computes, may differ (``RESUMABLE_CHANGES``).
"""

import json
from dataclasses import MISSING, fields, replace
from pathlib import Path

from smelt.commands.common import DataOptions
from smelt.errors import SmeltError
from smelt.lifecycle import read_manifest
from smelt.lifecycle.destinations import PROVIDER_API, RECORDED, destination_refused, is_server_model
from smelt.lifecycle.recorded_task import is_python_task, recorded_task_spec
from smelt.lm.credentials import API_KEY_ENV, environment_key, strip_userinfo
from smelt.log import to_stderr
from smelt.programs.registry import get_task
from smelt.redaction import REDACTED, redact

# Options a resumed run takes from the new command line: parallelism, DSPy's response cache (fp32 answers are
# the same either way), where runs go, and the server URL (recorded without its password, so given again).
RESUMABLE_CHANGES = ("threads", "cache", "runs_root", "api_base", "resume")
# Options the dataclass holds as overrides only; the manifest records their full, resolved value under the same key.
_RESOLVED = ("program_options", "lora")


def resumed_options(fresh, command: str, given: dict[str, str] | None = None, *, changeable=RESUMABLE_CHANGES):
    """``fresh`` (options from the new command line, with ``resume`` set) rebuilt from the run's manifest.

    ``given`` maps each option the user typed to its flag, as ``{"lm": "--lm", "program_options.top_k": "-o
    top_k", "data.max_dev": "--max-dev"}``; without it (a library call) every option that differs from its
    default counts as given. A given option that contradicts the recorded value is an error naming both."""
    run_dir = Path(fresh.resume)
    manifest = read_manifest(run_dir, "--resume")
    if manifest.get("command") != command:
        raise SmeltError(f"--resume {run_dir}: that is a {manifest.get('command')} run, not a {command} run; resume "
                         f"it with `python cli.py {manifest.get('command')} --resume {run_dir}`")
    if command != "sweep" and (run_dir / "summary.json").is_file():  # a finished sweep may take more trials
        raise SmeltError(f"--resume {run_dir}: this run already finished (its results: {run_dir / 'report.md'}); "
                         "start a new run without --resume")
    if not isinstance(manifest.get("options"), dict) or not isinstance(manifest.get("models"), dict):
        missing = "options" if not isinstance(manifest.get("options"), dict) else "models"
        raise SmeltError(f"--resume {run_dir}: its manifest.json records no {missing}, so the run cannot be continued "
                         "as it was started; start a new run")
    recorded = _recorded(type(fresh), manifest)
    given = _differing_from_defaults(fresh) if given is None else given
    task = getattr(fresh, "task", None)
    if task and manifest.get("task") and _task_name(task) != manifest["task"]:
        raise SmeltError(f"--resume {run_dir}: a run of task {manifest['task']}, not {_task_name(task)}; leave TASK "
                         "out to continue it")
    for path, flag in given.items():
        if path.split(".")[0] in (*changeable, "task"):
            continue
        new, old = _normal(_get(fresh, path)), _normal(_recorded_value(recorded, manifest, path))
        if new != old:
            started = f"{flag} {_shown(old)}" if not isinstance(old, bool | None) else f"{path}={_shown(old)}"
            raise SmeltError(f"--resume {run_dir}: {flag} {_shown(new)} contradicts the run, which was started with "
                             f"{started}; drop {flag} to continue it as it was started, or start a new run")
    given_names = {path.split(".")[0] for path in given}
    keep = {name: getattr(fresh, name) for name in changeable if hasattr(fresh, name)
            and (name in given_names or name == "resume")}
    if task:  # TASK as typed now (a Python task is only run when the user names it)
        keep["task"] = task
    elif _is_python(getattr(recorded, "task", None)):
        recorded_task_spec(manifest, run_dir, command=command, option="--resume")  # says how to name it
    keep["api_base"] = _resumed_api_base(recorded, keep.get("api_base"), run_dir)
    return replace(recorded, **keep)


def _resumed_api_base(recorded, given: str | None, run_dir: Path) -> str | None:
    """Where a resumed run calls its server models: only where the user says (``smelt.lifecycle.destinations``):
    --api-base URL, or --api-base recorded for the server the run was started with (its password, never
    recorded, from $SMELT_API_KEY). A run whose models all run in-process needs neither."""
    if given and given != RECORDED:
        return given
    servers = _server_models(recorded)
    if given is None:
        if servers:
            raise SmeltError(f"--resume {destination_refused(run_dir, servers)}")
        return None
    base = getattr(recorded, "api_base", None)
    if base and REDACTED in base:
        if REDACTED in strip_userinfo(base) or not environment_key():
            raise SmeltError(f"--resume {run_dir}: pass --api-base again ({base}, with its password: passwords "
                             f"are never recorded), or set {API_KEY_ENV} to the key")
        base = strip_userinfo(base)  # the recorded server, with the key in $SMELT_API_KEY
    for model in servers:
        to_stderr(f"[smelt] --resume {run_dir}: {model} on {redact(base) if base else PROVIDER_API} "
                  "(--api-base recorded)")
    return base


def _server_models(recorded) -> dict[str, str | None]:
    """{"--lm SPEC": recorded API base} for each model of the recorded options whose calls leave this process (a
    --teacher that is a run directory is that run's business: ``load_run`` asks for its destination)."""
    base = getattr(recorded, "api_base", None)
    found = {}
    for option in ("lm", "teacher", "judge", "prompt_lm"):
        value, flag = getattr(recorded, option, None), "--" + option.replace("_", "-")
        if not isinstance(value, str) or (option == "teacher" and Path(value, "manifest.json").is_file()):
            continue
        for spec in value.split(",") if option == "judge" else [value]:
            try:
                server = is_server_model(spec.strip(), f"the run's {flag}")
            except SmeltError:  # not a model spec (a teacher run that is gone): the command names it when it loads
                continue
            if server:
                found[f"{flag} {spec.strip()}"] = base
    return found


def recorded_task(run_dir: str | Path) -> str:
    """The TASK a run was started with (a shipped name or a task file), for a resume without TASK; a Python task
    must be named again (``smelt.lifecycle.recorded_task``)."""
    manifest = read_manifest(run_dir, "--resume")
    return recorded_task_spec(manifest, run_dir, command=str(manifest.get("command")), option="--resume")


def _recorded(cls, manifest: dict):
    options = dict(manifest.get("options") or {})
    if isinstance(options.get("data"), dict):
        options["data"] = DataOptions(**{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in options["data"].items()})
    if "program_options" in options and isinstance(manifest.get("program_options"), dict):
        options["program_options"] = manifest["program_options"]  # the program's full options, as it ran
    names = {f.name for f in fields(cls)}
    missing = [f.name for f in fields(cls) if f.name not in options and f.default is MISSING
               and f.default_factory is MISSING]
    if missing:
        raise SmeltError(f"the run's manifest.json has no {', '.join(missing)}; it was written by another version "
                         "of smelt, so it cannot be resumed: start a new run")
    return cls(**{k: v for k, v in options.items() if k in names})


def _recorded_value(recorded, manifest: dict, path: str):
    """The recorded value at ``path``; for an override dict (``lora.r``) the manifest's resolved value when the
    run was started without that override."""
    head, _, rest = path.partition(".")
    overrides = getattr(recorded, head, None)
    if head in _RESOLVED and rest and isinstance(overrides, dict) and rest not in overrides:
        return (manifest.get(head) or {}).get(rest)
    return _get(recorded, path)


def _get(options, path: str):
    value = options
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return value


def _differing_from_defaults(options) -> dict[str, str]:
    """Every option that differs from its default, an override dict key by key (``program_options.top_k``)."""
    given = {}
    for f in fields(options):
        value = getattr(options, f.name)
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        if f.name in _RESOLVED and isinstance(value, dict):
            given |= {f"{f.name}.{key}": f"{f.name}.{key}" for key in value}
        elif default is MISSING or _normal(value) != _normal(default):
            given[f.name] = f.name
    return given


def _normal(value):
    """Values compared as the manifest holds them (tuples become lists, dataclasses dicts)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value):
        value = asdict(value)
    return json.loads(json.dumps(value, default=str))


def _shown(value) -> str:
    return "(not given)" if value is None else str(value)


def _is_python(task) -> bool:
    return isinstance(task, str) and is_python_task(task)


def _task_name(task: str) -> str:
    return get_task(task).name
