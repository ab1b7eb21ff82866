"""``eval``: score a finished compile or distill run on a split or on new data, in a run directory of its own."""

import time
from dataclasses import asdict, dataclass

from smelt.commands.common import (
    DataOptions,
    RunOptions,
    describe_judge,
    load_judge,
    recorded_judge,
)
from smelt.commands.resume import resumed_options
from smelt.commands.workbench import prepare
from smelt.errors import SmeltError
from smelt.eval.jury import disagreement_lines
from smelt.eval.reports.tables import markdown_table, text_table
from smelt.lifecycle import Run, RunOutcome, build_manifest, check_runs_root
from smelt.lifecycle.reloaded_run import load_run
from smelt.lm.dspy_settings import configure_dspy
from smelt.programs.metric_names import split_grounded


@dataclass
class EvalOptions(RunOptions):
    program: str | None = None  # required; None only for a --resume, which reads it from the run
    task: str | None = None  # when given, the program run must be of this task
    split: str = "test"
    lm: str | None = None  # default: the model the program was built for
    resume: str | None = None


def run_eval(options: EvalOptions, log=print, *, given: dict[str, str] | None = None) -> RunOutcome:
    """Score a finished run's program on a split (or on --data FILE) in an eval run of its own."""
    started = time.perf_counter()
    if options.resume:
        options = resumed_options(options, "eval", given)
    check_runs_root(options.runs_root, options.resume)  # before any model loads
    if not options.program:
        raise SmeltError("eval needs --program RUN_DIR: a compile, distill or sweep run directory")
    if options.split not in ("train", "dev", "test"):
        raise SmeltError(f"--split {options.split!r}: use train, dev or test")
    configure_dspy(options.threads)  # before the run's model loads (prepare says it again)
    loaded = load_run(options.program, task_name=options.task, lm_spec=options.lm, device=options.device,
                      api_base=options.api_base, cache=options.cache, command="eval", log=log)

    judge_spec = options.judge or (loaded.manifest.get("models", {}).get("judge") or {}).get("spec")
    metric_name = options.metric or loaded.manifest.get("metric")
    wants_judge = metric_name is None or split_grounded(metric_name)[0] == "judge"

    def the_judge():  # --judge on --api-base; the run's judge where the user says (lifecycle.destinations)
        if not (judge_spec and wants_judge):
            return None
        return load_judge(options) if options.judge else recorded_judge(options, loaded.manifest, loaded.run_dir,
                                                                        log=log)

    data, split = options.data, options.split
    if data.data and not (data.train or data.dev or data.test):  # --data FILE alone: every line is evaluated
        data = DataOptions(**{**asdict(data), "test": data.data, "train": data.data, "dev": data.data, "data": None})
        split = "test"
    bench = prepare(options, loaded.task, metric=metric_name, judge=the_judge, data=data, check=False)
    splits = bench.splits
    examples = getattr(splits, split)
    if not examples:
        raise SmeltError(f"the {split} split is empty; pick another --split or pass --data FILE")
    judge, metric = bench.judge, bench.metric  # data mistakes are named before a judge loads

    run = Run.open(loaded.task, "eval", resume=options.resume, runs_root=options.runs_root, threads=options.threads,
                   log=log, started=started, manifest=lambda: build_manifest(
                       command="eval", task=loaded.task, options=asdict(options), seed=options.seed,
                       models={"program": loaded.lm.describe(), **({"judge": describe_judge(judge)} if judge else {})},
                       data_sources={split: splits.sources.get(split, "")},
                       program_options=loaded.manifest.get("program_options"),
                       extra={"program_run": str(loaded.run_dir), "metric": metric.name, "split": split}))
    result = run.score(loaded.program, examples, name=split, metric=metric, lm=loaded.lm, desc=f"eval {split}",
                       latency_sample=options.latency_sample)
    summary = {"task": loaded.task.name, "command": "eval", "program_run": str(loaded.run_dir), "split": split,
               "metric": metric.name, split: result.summary}
    columns = {f"{loaded.run_dir.name} {split}": result.summary}
    report = [f"# eval {loaded.run_dir} on {split}", "", markdown_table(columns),
              *disagreement_lines(result.records, split)]
    return run.finish(summary, report=lambda _: "\n".join(report) + "\n", table=text_table(columns))
