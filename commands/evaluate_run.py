"""``eval``: score a finished compile or distill run on a split or on new data, in a run directory of its own."""

import time
from dataclasses import asdict, dataclass

from smelt.commands.common import (
    DataOptions,
    RunOptions,
    configure_dspy,
    describe_judge,
    load_judge,
    load_run,
    load_task_data,
    peak_memory_mb,
    scoring_metric,
)
from smelt.errors import SmeltError
from smelt.eval.evaluate import evaluate
from smelt.eval.jury import disagreement_lines
from smelt.eval.reports.html import write_html_report
from smelt.eval.reports.tables import markdown_table, text_table
from smelt.files import write_json, write_text
from smelt.programs.metric_names import split_grounded
from smelt.runs import build_manifest, check_runs_root, open_run_dir


@dataclass
class EvalOptions(RunOptions):
    program: str | None = None  # required; None only for a --resume, which reads it from the run
    task: str | None = None  # when given, the program run must be of this task
    split: str = "test"
    lm: str | None = None  # default: the model the program was built for
    resume: str | None = None


def run_eval(options: EvalOptions, log=print):
    started = time.perf_counter()
    if options.resume:
        from smelt.commands.resume import resumed_options

        options = resumed_options(options, "eval")
    check_runs_root(options.runs_root, options.resume)  # before any model loads
    if not options.program:
        raise SmeltError("eval needs --program RUN_DIR: a compile, distill or sweep run directory")
    if options.split not in ("train", "dev", "test"):
        raise SmeltError(f"--split {options.split!r}: use train, dev or test")
    configure_dspy(options.threads)
    loaded = load_run(options.program, task_name=options.task, lm_spec=options.lm, device=options.device,
                      api_base=options.api_base, cache=options.cache, command="eval", log=log)

    judge_spec = options.judge or (loaded.manifest.get("models", {}).get("judge") or {}).get("spec")
    metric_name = options.metric or loaded.manifest.get("metric")
    wants_judge = metric_name is None or split_grounded(metric_name)[0] == "judge"
    judge = load_judge(options, judge_spec) if judge_spec and wants_judge else None
    metric = scoring_metric(options, loaded.task, judge, metric_name)
    data = options.data
    if data.data and not (data.train or data.dev or data.test):
        # --data FILE alone: every line is evaluated.
        data = DataOptions(**{**asdict(data), "test": data.data, "train": data.data, "dev": data.data, "data": None})
        split = "test"
    else:
        split = options.split
    splits = load_task_data(loaded.task, data, options.seed)
    examples = getattr(splits, split)
    if not examples:
        raise SmeltError(f"the {split} split is empty; pick another --split or pass --data FILE")

    run_dir = open_run_dir(loaded.task.name, "eval", resume=options.resume, root=options.runs_root)
    if not (run_dir / "manifest.json").exists():
        write_json(run_dir / "manifest.json", build_manifest(
            command="eval", task=loaded.task, options=asdict(options), seed=options.seed,
            models={"program": loaded.lm.describe(), **({"judge": describe_judge(judge)} if judge else {})},
            data_sources={split: splits.sources.get(split, "")},
            program_options=loaded.manifest.get("program_options"),
            extra={"program_run": str(loaded.run_dir), "metric": metric.name, "split": split},
        ))
    log(f"[smelt] run directory: {run_dir}")
    result = evaluate(loaded.program, examples, metric=metric, lm=loaded.lm, threads=options.threads,
                      out_path=run_dir / "eval" / f"{split}.jsonl", desc=f"eval {split}",
                      latency_sample=options.latency_sample)
    summary = {"task": loaded.task.name, "command": "eval", "program_run": str(loaded.run_dir), "split": split,
               "metric": metric.name, split: result.summary, "wall_s": round(time.perf_counter() - started, 1),
               "peak_memory_mb": peak_memory_mb()}
    write_json(run_dir / "summary.json", summary)
    columns = {f"{loaded.run_dir.name} {split}": result.summary}
    report = [f"# eval {loaded.run_dir} on {split}", "", markdown_table(columns),
              *disagreement_lines(result.records, split)]
    write_text(run_dir / "report.md", "\n".join(report) + "\n")
    write_html_report(run_dir, log=log)
    return run_dir, summary, text_table(columns)
