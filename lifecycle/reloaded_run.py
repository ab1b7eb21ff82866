"""A finished run put back together to answer: its task, program and model, as ``eval``, ``run``, ``serve`` and
``distill --teacher`` use it. The run directory is data: it chooses no model (program.json's saved ``lm`` is dropped),
runs no code (a Python task loads only when the user names it) and no destination (``destinations``)."""

from dataclasses import dataclass
from pathlib import Path

import dspy

from smelt.errors import SmeltError
from smelt.lifecycle.destinations import recorded_base, run_api_base
from smelt.lifecycle.manifest import read_manifest
from smelt.lifecycle.recorded_task import task_of_run
from smelt.lm import lm_for_spec
from smelt.log import to_stderr
from smelt.programs.decoding_options import RECORDED_BEFORE_DECODING_OPTIONS
from smelt.programs.program_file import load_program_file
from smelt.programs.registry import Task


@dataclass
class LoadedRun:
    """A finished compile or distill run, ready to answer: its task, program and the model it runs on."""

    run_dir: Path
    manifest: dict
    task: Task
    program: dspy.Module
    lm: object  # smelt.lm.build.ResolvedLM


def recorded_program_options(manifest: dict) -> dict:
    """The program options a run recorded; one recorded before the decoding options existed decodes as it was made
    (no constraint, labels generated)."""
    recorded = manifest.get("program_options")
    return {**RECORDED_BEFORE_DECODING_OPTIONS, **(recorded if isinstance(recorded, dict) else {})}


def load_run(run_dir: str | Path, *, task_name: str | None = None, option: str = "--program",
             lm_spec: str | None = None, device: str = "auto", api_base: str | None = None,
             cache: bool = True, command: str = "eval", log=None) -> LoadedRun:
    """Reload a run's program (DSPy JSON) on the model it was built for, or on ``lm_spec`` if given.

    With ``task_name`` (any form of TASK), a run of another task is refused (naming ``option``) before any model
    is loaded. Without it the run's own task is found again from its manifest, unless that task is Python code
    (``smelt.lifecycle.recorded_task``). Nothing in the run directory chooses a model: program.json's saved ``lm``
    is dropped (``log`` hears of it), and the model is the manifest's recorded spec or ``lm_spec``. Nor does it
    choose where a server model is called: ``smelt.lifecycle.destinations``."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir, option)
    fallback = manifest  # where a model without a recorded API base finds the run's --api-base
    if manifest.get("command") == "sweep":  # a sweep stands for its best trial
        best = run_dir / "best"
        if not (best / "manifest.json").is_file():
            raise SmeltError(f"{run_dir}: a sweep with no best trial yet; finish it with "
                             f"`python cli.py sweep {manifest.get('task')} --resume {run_dir}`")
        run_dir, manifest = best, read_manifest(best)
    if manifest.get("command") == "eval":  # scores only; the program is in the run it scored
        scored = manifest.get("program_run") or "the compile or distill run it scored"
        raise SmeltError(f"{option} {run_dir}: an eval run, which holds scores but no program; pass the run it "
                         f"scored ({scored}) or another compile, distill or sweep run")
    task = task_of_run(manifest, run_dir, given=task_name, command=command, option=option)
    program_file = run_dir / "program.json"
    if not program_file.is_file():
        raise SmeltError(f"{run_dir}: has no program.json (the run did not finish compiling); "
                         f"rerun it with --resume {run_dir}")
    program = task.program(recorded_program_options(manifest))
    load_program_file(program, program_file, task_name=task.name, log=log)
    recorded = (manifest.get("models") or {}).get("program")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("spec"), str):
        raise SmeltError(f"{run_dir / 'manifest.json'}: records no program model (models.program.spec); it is not a "
                         "manifest smelt wrote")
    role = "teacher" if option == "--teacher" else "program model"
    say = log or to_stderr
    if lm_spec:  # another model: no adapter, and the full prompt it needs without one
        # The run's server stands only for the model the run recorded (and only with --api-base recorded).
        same = recorded_base(recorded, fallback) if lm_spec == recorded["spec"] else None
        lm = lm_for_spec(lm_spec, device=device, cache=cache,
                         api_base=run_api_base(lm_spec, api_base, same, role=role, run_dir=run_dir,
                                               named_by_user=True, log=say))
    else:
        adapter = recorded.get("adapter")
        if adapter is not None and not (isinstance(adapter, str) and _inside(run_dir / adapter, run_dir)):
            raise SmeltError(f"{run_dir / 'manifest.json'}: models.program.adapter {adapter!r} is not a folder inside "
                             "the run; a run's adapter is its own adapter/ folder")
        base = run_api_base(recorded["spec"], api_base, recorded_base(recorded, fallback), role=role,
                            run_dir=run_dir, log=say)
        lm = lm_for_spec(recorded["spec"], device=device, adapter=str(run_dir / adapter) if adapter else None,
                         api_base=base, cache=cache, instructions=recorded.get("instructions", True))
    return LoadedRun(run_dir, manifest, task, program, lm)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())
