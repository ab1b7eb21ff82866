"""``compile``: score the baseline program, optimize its prompts, score the compiled program; keep it all.

Steps (docs/architecture.md, "Data flow"): task -> model -> data -> baseline on dev/test -> optimizer on train ->
compiled on dev/test -> run directory. Every evaluation appends to its JSONL as it goes, so
``--resume RUN_DIR`` continues an interrupted run; a finished compile step is reloaded, not redone.
"""

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from smelt.commands.common import (
    RunOptions,
    describe_judge,
    save_program,
)
from smelt.commands.resume import resumed_options
from smelt.commands.workbench import prepare
from smelt.errors import SmeltError
from smelt.eval.jury import disagreement_lines
from smelt.eval.reports.tables import failure_examples, markdown_table, text_table
from smelt.lifecycle import Run, RunOutcome, build_manifest, check_runs_root
from smelt.lm import lm_for_spec
from smelt.optimizers.prompt import (
    COMPILE_DEFAULTS,
    CompileSettings,
    check_prompt_lm_use,
    check_proposer,
    check_task_defaults,
    check_train_size,
    compile_program,
    interleave_labels,
    writes_instructions,
)
from smelt.optimizers.proposal_failures import ProposalTally
from smelt.programs.program_file import load_program_file
from smelt.programs.registry import get_task


@dataclass
class CompileOptions(RunOptions):
    task: str = "doc_qa"
    optimizer: str | None = None  # None: the task's compile default, else bootstrap
    lm: str = "gemma-3-270m"
    prompt_lm: str | None = None  # the model that writes mipro/copro/simba/gepa's instructions; None: --lm
    max_demos: int | None = None  # None: the task's, else 2
    max_labeled_demos: int | None = None  # None: the task's, else 2
    diverse_demos: bool | None = None  # no two demos with the same answer; None: by task (optimizers.demo_diversity)
    program_options: dict = field(default_factory=dict)  # -o key=value, e.g. {"predictor": "cot"}
    resume: str | None = None


def run_compile(options: CompileOptions, log=print, *, given: dict[str, str] | None = None) -> RunOutcome:
    """The recipe: check everything, load the models, then baseline -> compile -> compiled, each step kept in the
    run directory as it finishes. ``given``: the flags typed with --resume (``commands.resume``)."""
    started = time.perf_counter()
    if options.resume:
        options = resumed_options(options, "compile", given)
    check_runs_root(options.runs_root, options.resume)  # before any model loads
    bench, options, program_options, settings = _checked(options)
    task, splits = bench.task, bench.splits

    lm = lm_for_spec(options.lm, device=options.device, api_base=options.api_base, cache=options.cache)
    judge, metric, prompt_lm = bench.judge, bench.metric, bench.prompt_model
    checked = _check_proposer(options, task, program_options, splits.train, lm, prompt_lm, log)
    run = Run.open(task, "compile", resume=options.resume, runs_root=options.runs_root, threads=options.threads,
                   log=log, started=started, manifest=lambda: build_manifest(
                       command="compile", task=task, options=asdict(options), seed=options.seed,
                       models={"program": lm.describe(), **({"judge": describe_judge(judge)} if judge else {}),
                               **({"prompt": prompt_lm.describe()} if prompt_lm else {})},
                       data_sources=splits.sources, program_options=program_options,
                       extra={"metric": metric.name, "optimizer": options.optimizer,
                              "sizes": {s: len(getattr(splits, s)) for s in ("train", "dev", "test")}}))

    def score(program, label: str) -> dict[str, dict]:
        return {split: _score(run, program, getattr(splits, split), split, label, metric, lm,
                              options.latency_sample if split == "test" else 0) for split in ("dev", "test")}

    summaries = {"baseline": score(task.program(program_options), "baseline")}
    compile_started = time.perf_counter()
    proposals = ProposalTally()
    compiled = compile_into(run.dir, task, program_options, options.optimizer, settings, splits.train,
                            metric=metric, lm=lm, log=log, prompt_lm=prompt_lm, tally=proposals, checked=checked)
    compile_wall = time.perf_counter() - compile_started
    summaries["compiled"] = score(compiled, "compiled")

    columns = {f"{label} {split}": summaries[label][split]
               for split in ("dev", "test") for label in ("baseline", "compiled") if summaries[label][split]}
    for column in columns.values():
        column.setdefault("peak_memory_mb", None)
    summary = {
        "task": task.name, "command": "compile", "optimizer": options.optimizer, "metric": metric.name,
        "lm": options.lm, "judge": options.judge, "baseline": _strip_failures(summaries["baseline"]),
        "compiled": _strip_failures(summaries["compiled"]), "demos": sum(len(p.demos) for p in compiled.predictors()),
        "compile_wall_s": round(compile_wall, 1),
        **({"prompt_lm": options.prompt_lm or options.lm, "proposals": proposals.as_dict()}
           if writes_instructions(options.optimizer) else {}),
    }
    return run.finish(summary, report=lambda done: _report(done, columns, summaries), table=text_table(columns))


def _checked(options: CompileOptions):
    """Everything a user can get wrong, checked before a model loads: the task, its options, the data, the
    optimizer and its settings. Returns (workbench, options with the task's defaults, program options, optimizer
    settings)."""
    task = get_task(options.task)
    options = with_compile_defaults(options, task)
    program_options = {**task.default_options(), **options.program_options}
    task.program(program_options)  # validates the options
    bench = prepare(options, task, lm=options.lm, prompt_lm=options.prompt_lm)
    if not bench.splits.dev and not bench.splits.test:
        raise SmeltError("dev and test are both empty: there is nothing to score; give dev or test data")
    settings = CompileSettings(options.seed, options.threads, options.max_demos, options.max_labeled_demos,
                               diverse_demos=options.diverse_demos)
    check_train_size(options.optimizer, len(bench.splits.train), max_train=options.data.max_train)
    check_prompt_lm_use(options.optimizer, options.prompt_lm)
    return bench, options, program_options, settings


def _check_proposer(options: CompileOptions, task, program_options: dict, train: list, lm, prompt_lm, log) -> bool:
    """The prompt model's one-call check, before the baseline is scored and the run directory is made: a model
    that cannot write the optimizer's instructions is named in seconds. Not needed where a resumed run already
    holds its compiled program. Returns whether it ran."""
    if options.resume and (Path(options.resume) / "program.json").exists():
        return False
    program = task.program(program_options)
    check_proposer(options.optimizer, program, [task.as_demo(program, ex) for ex in train[:1]], lm=lm,
                   prompt_lm=prompt_lm, log=log)
    return True


def _score(run: Run, program, examples: list, split: str, label: str, metric, lm, latency_sample: int) -> dict:
    """One split's summary, with its failed examples and the jury's disagreements for report.md ({} when the split
    is empty)."""
    if not examples:
        return {}
    name = f"baseline.{split}" if label == "baseline" else split
    result = run.score(program, examples, name=name, metric=metric, lm=lm, desc=f"{label} {split}",
                       latency_sample=latency_sample)
    return result.summary | {"failures": failure_examples(result.records),
                             "disagreements": disagreement_lines(result.records, f"{label} {split}")}


def with_compile_defaults(options: CompileOptions, task) -> CompileOptions:
    """Optimizer settings the user left out: the task's own defaults, else smelt's."""
    check_task_defaults(task)
    defaults = {**COMPILE_DEFAULTS, **task.compile_defaults}
    return replace(options, **{name: value for name, value in defaults.items() if getattr(options, name) is None})


def compile_into(run_dir: Path, task, program_options: dict, optimizer: str, settings: CompileSettings, train,
                 *, metric, lm, log=print, prompt_lm=None, tally: ProposalTally | None = None, checked: bool = False):
    """Compile the task's program on ``train`` and save it as ``run_dir/program.json`` (DSPy JSON, written
    atomically); a program already saved there (an interrupted run resumed) is reloaded instead. ``prompt_lm``
    writes the optimizer's instructions (None: ``lm``), ``checked`` already (``check_proposer``) or now; ``tally``
    gets its failed proposals."""
    program_file = run_dir / "program.json"
    program = task.program(program_options)
    if program_file.exists():
        load_program_file(program, program_file, task_name=task.name, log=log)
        log(f"[smelt] reusing the compiled program in {program_file}")
        return program
    log(f"[smelt] compiling with {optimizer} on {len(train)} train examples ...")
    if task.answer_labels:  # demos taken in order then cover the labels in turn, not the first label's examples

        train = interleave_labels(train, task.answer_field, seed=settings.seed)
        settings = replace(settings, labeled_in_order=True)
    trainset = [task.as_demo(program, ex) for ex in train]
    compiled = compile_program(program, optimizer, trainset=trainset, metric=metric, lm=lm, settings=settings,
                               log=log, prompt_lm=prompt_lm, tally=tally, checked=checked)
    save_program(compiled, run_dir)
    return compiled


def _strip_failures(by_split: dict) -> dict:
    return {split: {k: v for k, v in s.items() if k not in ("failures", "disagreements")}
            for split, s in by_split.items() if s}


def _report(summary: dict, columns: dict, summaries: dict) -> str:
    lines = [
        f"# compile {summary['task']} — {summary['optimizer']} on {summary['lm']}",
        "",
        f"Metric: **{summary['metric']}**"
        + (f" (judge: {summary['judge']})" if summary.get("judge") else "")
        + f". Compiled program: {summary['demos']} demos."
        + (f" Prompt model {summary['prompt_lm']}: {summary['proposals']['failed']} of "
           f"{summary['proposals']['asked']} proposals failed." if summary.get("proposals") else "")
        + f" Compile time {summary['compile_wall_s']} s, "
        f"total {summary['wall_s']} s, peak memory {summary['peak_memory_mb']:.0f} MB.",
        "",
        markdown_table(columns),
        "",
        "Per-example records: `eval/<split>.jsonl` (compiled) and `eval/baseline.<split>.jsonl`.",
    ]
    for label in ("baseline", "compiled"):
        for split, s in summaries[label].items():
            if s and s.get("failures"):
                lines += ["", f"## Failed examples: {label} {split} (first {len(s['failures'])})", ""]
                lines += [f"- `{f['id']}`: {f['error']}" for f in s["failures"]]
            if s:
                lines += s.get("disagreements") or []
    return "\n".join(lines) + "\n"
