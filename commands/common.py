"""What every command needs: task data, models, metrics, DSPy settings, reloading a finished run."""

from dataclasses import dataclass, field
from pathlib import Path

import dspy

from smelt.commands.destinations import RECORDED, recorded_base, run_api_base
from smelt.errors import SmeltError
from smelt.eval.judge import metric_name, resolve_metric
from smelt.eval.jury import judge_specs, load_criteria
from smelt.files import write_json
from smelt.lifecycle import read_manifest
from smelt.lifecycle.recorded_task import task_of_run
from smelt.lm import lm_for_spec
from smelt.lm.devices import resolve_device
from smelt.lm.specs import parse_spec
from smelt.lm.truncation import install_truncation_filter
from smelt.log import to_stderr
from smelt.programs.datasets import load_splits
from smelt.programs.field_mapping import parse_field_mapping
from smelt.programs.program_file import load_program_file
from smelt.programs.registry import Task


@dataclass
class DataOptions:
    """Where the examples come from: the task's shipped data, or --data / --train --dev --test files."""

    data: str | None = None
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    fields: tuple[str, ...] = ()
    max_train: int | None = None
    max_dev: int | None = None
    max_test: int | None = None


@dataclass(kw_only=True)
class RunOptions:
    """What every scoring command takes: metric and judge, seed, threads, device, data, where runs go, caching."""

    metric: str | None = None  # None: the task's default metric (or the run's, for eval)
    judge: str | None = None  # a model spec; several, comma-separated, form a jury
    criteria: str | None = None  # a rubric file: the judge rates each item (--criteria)
    seed: int = 0
    threads: int = 8
    device: str = "auto"
    api_base: str | None = None
    data: DataOptions = field(default_factory=DataOptions)
    runs_root: str | None = None
    cache: bool = True
    latency_sample: int = 8  # test examples also timed one request at a time (0: skip)

    def __post_init__(self):
        if self.latency_sample < 0:
            raise SmeltError("--latency-sample must be 0 or more")
        if self.threads < 1:
            raise SmeltError(f"--threads {self.threads}: use 1 or more (parallel requests; 1 runs them one by one)")


def load_task_data(task: Task, options: DataOptions, seed: int):
    """The task's train/dev/test Examples (shipped data unless files are given), cut to any --max-* limits."""
    if options.data or options.train or options.dev or options.test:
        splits = load_splits(
            data=options.data, train=options.train, dev=options.dev, test=options.test,
            fields=parse_field_mapping(tuple(options.fields)), input_keys=task.input_fields,
            required=(*task.input_fields, task.answer_field), seed=seed,
            labels={task.answer_field: task.answer_labels} if task.answer_labels else None,
        )
    else:
        splits = task.shipped_data()
    for name in ("train", "dev", "test"):
        limit = getattr(options, f"max_{name}")
        if limit is not None:
            if limit < 0:
                raise SmeltError(f"--max-{name} must be 0 or more")
            setattr(splits, name, getattr(splits, name)[:limit])
    return splits


def check_model_options(lm: str | None, judge: str | None, metric: str | None, device: str, task=None) -> None:
    """Fail on a bad --lm/--judge/--metric/--device in a moment, before data or weights are loaded."""
    if lm:
        parse_spec(lm, "--lm")

    for spec in judge_specs(judge):
        parse_spec(spec, "--judge")
    metric_name(metric, judge is not None, task)
    resolve_device(device)


def load_judge(options: RunOptions, spec: str | None = None, *, api_bases: list[str | None] | None = None):
    """The judge models of --judge (or ``spec``): one ResolvedLM, a list of them for a jury, or None. Each judge
    is called on --api-base, or on its entry of ``api_bases`` (a run's recorded judges, ``recorded_judge``)."""
    specs = judge_specs(spec or options.judge)
    given = None if options.api_base == RECORDED else options.api_base  # a judge the user names: its own provider
    bases = api_bases if api_bases is not None else [given] * len(specs)
    judges = [lm_for_spec(one, option="--judge", device=options.device, api_base=base, cache=options.cache)
              for one, base in zip(specs, bases, strict=True)]
    return None if not judges else judges[0] if len(judges) == 1 else judges


def recorded_judge(options: RunOptions, manifest: dict, run_dir: Path, log=print):
    """The judge (or jury) a run recorded, where the user says (``smelt.commands.destinations``): ``log`` hears
    which."""
    record = (manifest.get("models") or {}).get("judge") or {}
    members = record["jury"] if isinstance(record.get("jury"), list) else [record]
    bases = [run_api_base(member.get("spec"), options.api_base, recorded_base(member, manifest), role="judge",
                          run_dir=run_dir, log=log) for member in members]
    return load_judge(options, record.get("spec"), api_bases=bases)


def describe_judge(judge) -> dict:
    """What a manifest records of the judge: its model, or a jury's models (``spec`` joins their specs)."""
    if isinstance(judge, list):
        return {"spec": ",".join(j.spec.raw for j in judge), "jury": [j.describe() for j in judge]}
    return judge.describe()


def scoring_metric(options: RunOptions, task, judge, name: str | None = None):
    """--metric (or ``name``), --judge and --criteria into the task's metric."""
    criteria = load_criteria(options.criteria) if options.criteria else None
    metric = resolve_metric(name or options.metric, task, judge, **({"criteria": criteria} if criteria else {}))
    if criteria and not hasattr(metric, "criteria") and not hasattr(getattr(metric, "base", None), "criteria"):
        raise SmeltError(f"--criteria {options.criteria}: rubric items are rated by a judge; add --judge SPEC (and "
                         f"--metric judge), the metric now is {metric.name}")
    return metric


def configure_dspy(threads: int) -> None:
    """Global DSPy settings for a command: failures are recorded per example, never fatal; DSPy's per-answer
    "LM response was truncated" warnings are counted (and reported once per evaluation), not printed."""
    dspy.configure(max_errors=10**9, num_threads=threads)
    install_truncation_filter()


def save_program(program: dspy.Module, run_dir: Path) -> None:
    """``run_dir/program.json``: the JSON DSPy's ``save`` writes (prompts, demos, versions), written atomically, so
    a reader never sees half a program, and a full disk is an OSError naming the file (DSPy's own save turns it
    into a RuntimeError)."""
    from dspy.utils.saving import get_dependency_versions

    state = program.dump_state() | {"metadata": {"dependency_versions": get_dependency_versions()}}
    write_json(run_dir / "program.json", state)


@dataclass
class LoadedRun:
    """A finished compile or distill run, ready to answer: its task, program and the model it runs on."""

    run_dir: Path
    manifest: dict
    task: Task
    program: dspy.Module
    lm: object  # smelt.lm.build.ResolvedLM


def load_run(run_dir: str | Path, *, task_name: str | None = None, option: str = "--program",
             lm_spec: str | None = None, device: str = "auto", api_base: str | None = None,
             cache: bool = True, command: str = "eval", log=None) -> LoadedRun:
    """Reload a run's program (DSPy JSON) on the model it was built for, or on ``lm_spec`` if given.

    With ``task_name`` (any form of TASK), a run of another task is refused (naming ``option``) before any model
    is loaded. Without it the run's own task is found again from its manifest, unless that task is Python code
    (``smelt.lifecycle.recorded_task``). Nothing in the run directory chooses a model: program.json's saved ``lm``
    is dropped (``log`` hears of it), and the model is the manifest's recorded spec or ``lm_spec``. Nor does it
    choose where a server model is called: ``smelt.commands.destinations``."""
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
    program = task.program(manifest.get("program_options"))
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
