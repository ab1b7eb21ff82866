"""``distill``: turn a compiled program on a large teacher into a zero-shot LoRA student.

1. The teacher (a compile run, or a model spec running the uncompiled program) answers the train inputs.
2. Answers reaching --min-score become SFT targets; where the teacher missed, the gold answer may stand in
   (--use-labels). --synthetic N adds teacher-written inputs (smelt.optimizers.distill.synthetic_examples),
   judge-filtered.
3. The SFT set is written as chat JSONL in exactly the prompt the zero-shot student sends at inference:
   no demos, and (unless --student-instructions) no DSPy system message either. The adapter learns the
   task's instructions from the examples, so the student's prompt is little more than the passages and
   the question: that, with the smaller model, is where its speed comes from.
4. Before training: the teacher and the bare student are scored on test.
5. LoRA training (smelt.optimizers.distill.lora_training), with a checkpoint each epoch.
6. With --then-compile, the distilled student's prompt is compiled too (smelt.commands.then_compile), kept
   only where dev improves.
7. The program kept is scored on test; everything lands in the run directory.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dspy

from smelt.commands.common import (
    RunOptions,
    describe_judge,
    save_program,
)
from smelt.commands.resume import resumed_options
from smelt.commands.teacher import (
    Teacher,
    build_sft_set,
    check_attempt_options,
    load_teacher,
    resolve_teacher,
    sft_set_account,
    sft_set_lines,
    teacher_program_options,
)
from smelt.commands.then_compile import COMPILED, DISTILLED, ThenCompiled, compile_distilled
from smelt.commands.workbench import prepare
from smelt.errors import SmeltError
from smelt.eval.evaluate import summarize
from smelt.eval.jury import disagreement_lines
from smelt.eval.recorded_usage import fill_cached_usage
from smelt.eval.reports.tables import markdown_table, text_table
from smelt.files import write_json
from smelt.lifecycle import Run, RunOutcome, build_manifest, check_runs_root
from smelt.lm import lm_for_spec, parse_spec
from smelt.lm.devices import resolve_device
from smelt.lm.loading import check_weights_available, parameter_megabytes, unload_models
from smelt.optimizers.distill.adapter import train_adapter
from smelt.optimizers.distill.lora_config import LoraTrainingConfig, default_config
from smelt.optimizers.distill.lora_model import merge_adapter, require_qlora
from smelt.optimizers.distill.sft_examples import sft_counts_by_predictor
from smelt.optimizers.distill.teacher_attempts import DEFAULT_TEACHER_ATTEMPTS, DEFAULT_TEACHER_TEMPERATURE
from smelt.programs.registry import get_task

SFT_FILE = "sft.jsonl"
TRAINING_SUMMARY = "training.json"


@dataclass
class DistillOptions(RunOptions):
    student: str | None = None  # required; None only for a --resume, which reads it from the run
    teacher: str | None = None  # a compile or sweep run directory, or a model spec; None: the latest compile run
    task: str | None = None  # None: the teacher run's task
    program_options: dict = field(default_factory=dict)  # -o key=value, for a model-spec teacher
    min_score: float = 0.5
    use_labels: bool = True
    synthetic: int = 0
    teacher_attempts: int = DEFAULT_TEACHER_ATTEMPTS  # tries per train input until one reaches min_score
    teacher_temperature: float = DEFAULT_TEACHER_TEMPERATURE  # attempts 2.. sample at this temperature
    lora: dict = field(default_factory=dict)  # LoraTrainingConfig overrides, e.g. {"r": 16, "epochs": 2}
    merge: bool = False
    student_instructions: bool = False  # keep DSPy's system message (field list, instructions) in the student prompt
    then_compile: bool = False  # compile the distilled student's prompt (bootstrap); kept where dev improves
    resume: str | None = None


def zero_shot_options(teacher_options: dict) -> dict:
    """The student's program options: the teacher's, with a plain Predict where the task has a predictor knob
    (a distilled student answers directly; that, with the smaller model, is where its speed comes from)."""
    return {**teacher_options, **({"predictor": "predict"} if "predictor" in teacher_options else {})}


def student_record(student: str, spec, instructions: bool) -> dict:
    """The manifest's record of a distilled student: what ``load_run`` needs to put it back together."""
    return {"spec": student, "kind": spec.kind, "target": spec.target, "adapter": "adapter",
            "instructions": instructions}


# Long on purpose: the distill recipe, top to bottom (the module docstring's steps).
def run_distill(options: DistillOptions, log=print, *, given: dict[str, str] | None = None) -> RunOutcome:
    """The recipe (module docstring): check and set up, teacher -> SFT set, reference points on test, LoRA
    training, the distilled student on test. Every step's output is kept, so --resume redoes none of them."""
    started = time.perf_counter()
    if options.resume:
        options = resumed_options(options, "distill", given)
    check_runs_root(options.runs_root, options.resume)  # before any model loads
    setup = _setup(options, log)
    task, options, metric = setup.task, setup.options, setup.metric
    run = Run.open(task, "distill", resume=options.resume, runs_root=options.runs_root, threads=options.threads,
                   log=log, started=started, manifest=lambda: _manifest(setup))

    def score(program, lm, examples, name, desc):
        return run.score(program, examples, name=name, metric=metric, lm=lm, desc=desc,
                         latency_sample=options.latency_sample if name.endswith("test") else 0)

    # 1-3. Teacher traces -> SFT set.
    teacher = setup.teacher
    rows = build_sft_set(run.dir / SFT_FILE, task, teacher, setup.student_program, setup.splits.train, setup.judge,
                         options, score=lambda program, lm, examples, name: score(
                             program, lm, examples, name, name.replace(".", " ")), log=log)
    account = sft_set_account(rows, len(setup.splits.train), setup.student_program, options)
    counts, per_predictor = account["sft_sources"], account["sft_predictors"]
    log(f"[smelt] SFT set: {len(rows)} examples {counts} -> {run.dir / SFT_FILE}")
    if len(per_predictor) > 1:  # one adapter learns every step of the program
        log("[smelt] SFT examples per predictor: " + ", ".join(f"{name} {n}" for name, n in per_predictor.items()))
    sft_lines = sft_set_lines(account)
    log(f"[smelt] {sft_lines[-1]}")

    # 4. Reference points on test, before the student is changed by training.
    columns, results = {}, {}
    results["teacher"] = score(teacher.program, teacher.lm, setup.splits.test, "teacher.test", "teacher test")
    recorded = teacher.run_dir / "eval" if teacher.run_dir is not None else None
    if recorded:  # answers DSPy had cached: tokens and latency as the teacher's run measured them
        _with_recorded_usage(results["teacher"], recorded / "test.jsonl", run.dir / "eval" / "teacher.test.jsonl",
                             metric)
    columns["teacher"] = results["teacher"].summary | {"model_memory_mb": _model_mb(teacher.lm)}
    student_lm = lm_for_spec(options.student, option="--student", device=options.device, cache=options.cache)
    bare = results["student (no adapter)"] = score(setup.student_program, student_lm, setup.splits.test,
                                                   "student.test", "student (no adapter) test")
    if recorded and _same_model(teacher.lm, student_lm):  # the teacher run's baseline was the bare student
        _with_recorded_usage(bare, recorded / "baseline.test.jsonl", run.dir / "eval" / "student.test.jsonl", metric)
    columns["student (no adapter)"] = bare.summary | {"model_memory_mb": _model_mb(student_lm)}
    teacher_source = teacher.source
    student_options = zero_shot_options(teacher.program_options)
    # Training holds its own copy of the student (a served model is never changed): the served teacher and bare
    # student go first, or a GPU holds the student's weights twice.
    del teacher, student_lm
    setup.teacher = None

    # 5. Training.
    training = _trained(run.dir, setup, rows, log)

    # 6. The distilled student, loaded back from its safetensors; with --then-compile, its compiled prompt.
    distilled_lm = lm_for_spec(options.student, option="--student", device=options.device,
                               adapter=run.dir / "adapter", cache=options.cache,
                               instructions=options.student_instructions)
    then = _then_compiled(run, setup, distilled_lm, student_options, score, log) if options.then_compile else None
    kept = then.program if then else setup.student_program
    save_program(kept, run.dir)

    # 7. Test: the distilled student, and the compiled one where it was kept; eval/test.jsonl is the kept program's.
    tested = {DISTILLED: setup.student_program, **({COMPILED: then.program} if then and then.compiled_kept else {})}
    for label, program in tested.items():
        name = "test" if program is kept else "distilled.test"
        results[label] = score(program, distilled_lm, setup.splits.test, name, f"{label} test")
        columns[label] = results[label].summary | {"model_memory_mb": _model_mb(distilled_lm)}
    if options.merge:
        _merge(run.dir, distilled_lm, log)

    summary = {
        "task": task.name, "command": "distill", "student": options.student, "teacher": teacher_source,
        "metric": metric.name, "sft_examples": len(rows), "sft_sources": counts, "sft_predictors": per_predictor,
        "teacher_attempts": account["teacher_attempts"], "training": training,
        "test": columns,
        **({"then_compile": then.record(), "dev": then.dev} if then else {}),
    }
    disagreeing = [line for label, result in results.items()
                   for line in disagreement_lines(result.records, f"{label} test")]
    kept_line = then.line(metric.name) if then else ""
    return run.finish(summary, report=lambda done: _report(done, columns, kept_line)
                      + "".join(f"{x}\n" for x in disagreeing),
                      table=(f"{kept_line}\n" if kept_line else "") + text_table(columns)
                      + "\n\n" + "\n".join(sft_lines))


def _then_compiled(run: Run, setup: "_Setup", lm, student_options: dict, score, log) -> ThenCompiled:
    """--then-compile: the distilled student on dev, then its compiled prompt (``commands.then_compile``)."""
    distilled_dev = score(setup.student_program, lm, setup.splits.dev, "dev", f"{DISTILLED} dev")
    then = compile_distilled(run, setup.task, setup.student_program, student_options, lm, setup.splits.train,
                             setup.splits.dev, distilled_dev.summary, metric=setup.metric, seed=setup.options.seed,
                             threads=setup.options.threads, log=log)
    log(f"[smelt] {then.line(setup.metric.name)}")
    return then


@dataclass
class _Setup:
    """What a distill run works with, checked and loaded before its run directory is opened."""

    options: DistillOptions
    task: object
    student_spec: object
    device: str
    config: object  # LoraTrainingConfig
    splits: object
    teacher: Teacher | None
    judge: object
    metric: object
    student_program: dspy.Module


def _setup(options: DistillOptions, log) -> _Setup:
    """Every option checked before a model loads (student, scores, LoRA settings, metric, data), then the teacher
    and the judge loaded."""
    if not options.student:
        raise SmeltError("distill needs --student, e.g. --student gemma-3-270m (see `cli.py models`)")
    student_spec = parse_spec(options.student, "--student")
    if not student_spec.in_process:
        raise SmeltError(f"--student {options.student}: the student must be an in-process model "
                         "(gemma-3-270m, an alias such as llama-3.2-3b, or hf:<id or folder>) to train an adapter")
    check_weights_available(student_spec, "--student")  # not after hours of teacher calls
    options = resolve_teacher(options, log)
    task = get_task(options.task)
    _check_predictors(options, task)
    if not 0 <= options.min_score <= 1:
        raise SmeltError(f"--min-score {options.min_score}: use a score between 0 and 1")
    check_attempt_options(options)
    if options.synthetic < 0:
        raise SmeltError("--synthetic must be 0 or more")
    device = resolve_device(options.device)
    lora = dict(options.lora)
    if "r" in lora and "alpha" not in lora:
        lora["alpha"] = 2.0 * lora["r"]
    config = LoraTrainingConfig(**{**asdict(default_config(device)), "seed": options.seed, **lora})
    if config.qlora:  # refused in one line now, not after the teacher has answered the train set

        require_qlora(device)
    bench = prepare(options, task)
    splits = bench.splits
    if not splits.train:
        raise SmeltError("the train split is empty: distill needs train inputs for the teacher to answer")
    if not splits.test:
        raise SmeltError("the test split is empty: distill compares teacher and student on test")
    if options.then_compile and not splits.dev:
        raise SmeltError("--then-compile: the dev split is empty, and dev decides whether the compiled prompt is "
                         "kept; give dev data (--dev FILE, or a larger --max-dev) or drop --then-compile")
    teacher = load_teacher(options, task, log=log)
    judge, metric = bench.judge, bench.metric  # after the teacher: its mistakes are named first
    student_program = task.program(zero_shot_options(teacher.program_options))
    return _Setup(options, task, student_spec, device, config, splits, teacher, judge, metric, student_program)


def _check_predictors(options: DistillOptions, task) -> None:
    """Refuse a program with no predictor before the teacher loads: training the student would change nothing."""
    program = task.program(zero_shot_options(teacher_program_options(options, task)))
    if not program.named_predictors():
        raise SmeltError(f"task {options.task}: its program ({type(program).__name__}) has no predictors (no "
                         "dspy.Predict or ChainOfThought inside), so it makes no model call for a student to learn; "
                         "give the program a predictor, or distill a task whose program has one")


def _manifest(setup: _Setup) -> dict:
    options, teacher, judge = setup.options, setup.teacher, setup.judge
    return build_manifest(
        command="distill", task=setup.task, options=asdict(options), seed=options.seed,
        models={"program": student_record(options.student, setup.student_spec, options.student_instructions),
                "teacher": {**teacher.lm.describe(), "source": teacher.source},
                **({"judge": describe_judge(judge)} if judge else {})},
        data_sources=setup.splits.sources, program_options=zero_shot_options(teacher.program_options),
        extra={"metric": setup.metric.name, "lora": setup.config.to_dict(),
               "predictors": list(sft_counts_by_predictor(setup.student_program, [])),
               "teacher_program_options": teacher.program_options})


def _trained(run_dir: Path, setup: _Setup, rows: list[dict], log) -> dict:
    """The adapter trained into ``run_dir/adapter`` (or the one a resumed run already trained); its summary."""
    training_file = run_dir / TRAINING_SUMMARY
    if training_file.exists():
        log(f"[smelt] reusing the trained adapter in {run_dir / 'adapter'}")
        training = json.loads(training_file.read_text())
    else:
        unload_models()
        training = train_adapter(setup.student_spec, setup.config, setup.device, rows, run_dir,
                                 resume=bool(setup.options.resume), log=log)
        write_json(training_file, training)
    unload_models()  # the next load of the student is fresh: base weights + the saved adapter
    return training


def _merge(run_dir: Path, distilled_lm, log) -> None:
    merged_dir = run_dir / "merged"
    if not merged_dir.exists():
        merge_adapter(distilled_lm.engine.model.get_base_model(), run_dir / "adapter", merged_dir,
                      distilled_lm.engine.tokenizer)
    log(f"[smelt] merged weights for serving: {merged_dir}")


def _with_recorded_usage(result, recorded: Path, out_path: Path, metric) -> None:
    """Fill cached records' tokens and latency from an earlier run's records (``eval.recorded_usage``) and sum
    ``result`` up again, keeping its one-request latency."""
    if fill_cached_usage(result.records, recorded, out_path):
        kept = {k: v for k, v in result.summary.items() if k.startswith("single_request") or k == "threads"}
        result.summary = summarize(result.records, metric.name, wall_s=result.summary.get("wall_s")) | kept


def _same_model(a, b) -> bool:
    """Two resolved models that send the same prompts to the same weights (spec, dtype, adapter, prompt format)."""
    return a.lm.model == b.lm.model and getattr(a.adapter, "instructions", True) == getattr(b.adapter, "instructions",
                                                                                               True)


def _model_mb(resolved) -> float | None:
    return parameter_megabytes(resolved.engine.model) if resolved.engine is not None else None


def _report(summary: dict, columns: dict, kept_line: str = "") -> str:
    t = summary["training"]
    return "\n".join([
        f"# distill {summary['task']}: {summary['teacher']} -> {summary['student']} (LoRA)",
        "",
        f"Metric: **{summary['metric']}** on test. " + "".join(f"{line}. " for line in sft_set_lines(summary)) +
        f"Training: {t['steps']} steps, loss {t['first_loss']} -> {t['final_loss']}, "
        f"{t['tokens_per_second']} tokens/s, {t['trainable_parameters']:,} trainable of "
        f"{t['total_parameters']:,} parameters.",
        "",
        markdown_table(columns),
        "",
        *([kept_line.replace("then-compile:", "With `--then-compile`:", 1) + ".", ""] if kept_line else []),
        "Files: `adapter/` (safetensors), `program.json` (the student program, "
        + ("with its compiled demos" if (summary.get("then_compile") or {}).get("kept") == COMPILED else "zero-shot")
        + "), `sft.jsonl`, "
        "`train_log.jsonl`, `eval/*.jsonl`.",
    ]) + "\n"
