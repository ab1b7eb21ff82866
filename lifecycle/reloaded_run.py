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
from smelt.lm.specs import runs_on_llamacpp
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


def load_program(run_dir: str | Path, *, task_name: str | None = None, option: str = "--program",
                 command: str = "eval", log=None) -> tuple[Path, dict, Task, dspy.Module]:
    """A finished run's program without its model: (the run directory that holds it, its manifest, task, program).

    A sweep stands for its best trial; an eval run, which holds no program, is refused naming ``option``. With
    ``task_name`` (any form of TASK), a run of another task is refused before anything else is read; without it the
    run's own task is found again from its manifest, unless that task is Python code
    (``smelt.lifecycle.recorded_task``). program.json's saved ``lm`` is dropped (``log`` hears of it)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir, option)
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
    return run_dir, manifest, task, program


def load_run(run_dir: str | Path, *, task_name: str | None = None, option: str = "--program",
             lm_spec: str | None = None, device: str = "auto", api_base: str | None = None,
             cache: bool = True, command: str = "eval", log=None) -> LoadedRun:
    """Reload a run's program (DSPy JSON, ``load_program``) on the model it was built for, or on ``lm_spec`` if given.

    Nothing in the run directory chooses a model: the model is the manifest's recorded spec or ``lm_spec``. Nor does
    it choose where a server model is called: ``smelt.lifecycle.destinations``."""
    fallback = read_manifest(Path(run_dir), option)  # where a model without a recorded API base finds --api-base
    run_dir, manifest, task, program = load_program(run_dir, task_name=task_name, option=option, command=command,
                                                    log=log)
    recorded = program_model(manifest, run_dir)
    role = "teacher" if option == "--teacher" else "program model"
    say = log or to_stderr
    on_llamacpp = bool(lm_spec) and runs_on_llamacpp(lm_spec, recorded["spec"])
    if lm_spec and not on_llamacpp:  # another model: no adapter, and the full prompt it needs without one
        # The run's server stands only for the model the run recorded (and only with --api-base recorded).
        same = recorded_base(recorded, fallback) if lm_spec == recorded["spec"] else None
        lm = lm_for_spec(lm_spec, device=device, cache=cache,
                         api_base=run_api_base(lm_spec, api_base, same, role=role, run_dir=run_dir,
                                               named_by_user=True, log=say))
    else:  # the run's own model (or its very weights on llama.cpp, --lm gguf:...), its adapter and prompt with it
        adapter = recorded.get("adapter")
        base = run_api_base(recorded["spec"], api_base, recorded_base(recorded, fallback), role=role,
                            run_dir=run_dir, log=say)
        if on_llamacpp:
            say(f"[smelt] {role}: the run's {recorded['spec']}{' with its adapter' if adapter else ''}, on llama.cpp "
                f"({lm_spec})")
        lm = lm_for_spec(lm_spec or recorded["spec"], device=device,
                         adapter=str(run_dir / adapter) if adapter else None, api_base=base, cache=cache,
                         instructions=recorded.get("instructions", True))
    return LoadedRun(run_dir, manifest, task, program, lm)


def program_model(manifest: dict, run_dir: Path) -> dict:
    """The manifest's record of the model a run's program runs on (``models.program``: spec, and for a distilled
    student its adapter folder, which must lie inside the run)."""
    recorded = (manifest.get("models") or {}).get("program")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("spec"), str):
        raise SmeltError(f"{run_dir / 'manifest.json'}: records no program model (models.program.spec); it is not a "
                         "manifest smelt wrote")
    adapter = recorded.get("adapter")
    if adapter is not None and not (isinstance(adapter, str) and _inside(run_dir / adapter, run_dir)):
        raise SmeltError(f"{run_dir / 'manifest.json'}: models.program.adapter {adapter!r} is not a folder inside "
                         "the run; a run's adapter is its own adapter/ folder")
    return recorded


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())
