"""What every command needs: task data, models, metrics, DSPy settings, reloading a finished run."""

from dataclasses import dataclass, field
from pathlib import Path

import dspy

from smelt.errors import SmeltError
from smelt.eval.judge import metric_name, resolve_metric
from smelt.eval.jury import judge_specs, load_criteria
from smelt.files import write_json
from smelt.lifecycle.destinations import RECORDED, recorded_base, run_api_base
from smelt.lm import lm_for_spec
from smelt.lm.devices import resolve_device
from smelt.lm.specs import parse_spec
from smelt.programs.datasets import load_splits
from smelt.programs.field_mapping import parse_field_mapping
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
    """The judge (or jury) a run recorded, where the user says (``smelt.lifecycle.destinations``): ``log`` hears
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


def save_program(program: dspy.Module, run_dir: Path) -> None:
    """``run_dir/program.json``: the JSON DSPy's ``save`` writes (prompts, demos, versions), written atomically, so
    a reader never sees half a program, and a full disk is an OSError naming the file (DSPy's own save turns it
    into a RuntimeError)."""
    from dspy.utils.saving import get_dependency_versions

    state = program.dump_state() | {"metadata": {"dependency_versions": get_dependency_versions()}}
    write_json(run_dir / "program.json", state)
