"""``serve RUN RUN ...``: several distill runs of one student served by one process over one copy of the student,
each with its own LoRA adapter, the run chosen per request (as LoRAX and llama.cpp's server do).

Only llama.cpp (``--lm gguf:...``) shares one base between adapters here: its server loads every run's adapter
beside one copy of the weights, and each request applies its run's own at scale 1 (``llamacpp_server``). The
in-process engine holds one adapter per loaded model, so several runs on it are refused in one line that names the
``--lm`` that works. Each run is named by its folder's name (``RUN_NAME``), the name its routes and a chat request's
``"model"`` use."""

import re
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lifecycle.reloaded_run import LoadedRun, load_program, program_model
from smelt.lm.gguf_files import gguf_model
from smelt.lm.llamacpp_server import server_for
from smelt.lm.lora_gguf import gguf_lora_adapter
from smelt.lm.specs import parse_spec, runs_on_llamacpp
from smelt.serving.loading import OPTION, load_served_run

_NAME = re.compile(r"[A-Za-z0-9._-]+")


def run_name(run_dir: str) -> str:
    """The name a run is served under: its folder's name."""
    return Path(run_dir).resolve().name


def load_several_runs(run_dirs: tuple[str, ...], *, task: str | None, lm: str | None, device: str,
                      api_base: str | None, timeout: float, log) -> dict[str, LoadedRun]:
    """Each run's program on one llama.cpp server holding every run's adapter, by run name (in the order given).
    Refused in one line before the model loads: two runs of one name, a run that is not a distill run (a sweep
    stands for its best trial), runs of different students, and a ``--lm`` other than their student's GGUF file."""
    names = _names(run_dirs)
    students = {name: _distilled_student(run_dir, task, log) for name, run_dir in names.items()}
    (first, (base, _)), *others = students.items()
    for name, (student, _) in others:
        if student != base:
            raise SmeltError(f"{OPTION} {names[name]}: its student is {student}, {names[first]}'s is {base}; runs "
                             "served together share one base model, so each must be a distill run of the same student")
    if not (lm and runs_on_llamacpp(lm, base)):
        raise SmeltError(f"{OPTION} {' '.join(run_dirs)}: several runs share one copy of their student only on "
                         f"llama.cpp; pass --lm gguf:gemma-3-270m (their student {base}'s own GGUF file)"
                         + (f", not --lm {lm}" if lm else ""))
    model = gguf_model(parse_spec(lm).target)
    adapters = tuple(dict.fromkeys(gguf_lora_adapter(adapter, model.path) for _, adapter in students.values()))
    server_for(model.path, context_length=model.context_length, adapters=adapters, device=device)  # each run's model
    # finds this server, which holds its adapter among the others
    return {name: load_served_run(run_dir, task=task, lm=lm, device=device, api_base=api_base, timeout=timeout,
                                  log=log) for name, run_dir in names.items()}


def _names(run_dirs: tuple[str, ...]) -> dict[str, str]:
    names: dict[str, str] = {}
    for run_dir in run_dirs:
        name = run_name(run_dir)
        if name in names:
            raise SmeltError(f"{OPTION} {names[name]} {run_dir}: both are named {name}, and each run is served under "
                             "its folder's name (/v1/NAME/predict); copy or rename one folder")
        if not _NAME.fullmatch(name):
            raise SmeltError(f"{OPTION} {run_dir}: its folder's name {name!r} is served as /v1/NAME/predict and may "
                             "hold only letters, digits, '.', '_' and '-'; rename the folder")
        names[name] = run_dir
    return names


def _distilled_student(run_dir: str, task: str | None, log) -> tuple[str, Path]:
    """(the student's spec, its adapter folder) of a distill run, or of a sweep's best trial if that is one."""
    program_dir, manifest, _, _ = load_program(run_dir, task_name=task, option=OPTION, command="serve", log=log)
    recorded = program_model(manifest, program_dir)
    command = manifest.get("command")
    if command != "distill" or not recorded.get("adapter"):
        what = f"a {command} run" if command != "distill" else "a distill run without an adapter"
        raise SmeltError(f"{OPTION} {run_dir}: {what}; runs served together must each be a distill run (or a "
                         "sweep whose best trial is one): one student, each run its own adapter")
    return recorded["spec"], program_dir / recorded["adapter"]
