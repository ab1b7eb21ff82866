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
6. The distilled student is scored on test; everything lands in the run directory.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dspy

from smelt.commands.common import (
    RunOptions,
    check_model_options,
    configure_dspy,
    describe_judge,
    load_judge,
    load_run,
    load_task_data,
    peak_memory_mb,
    save_program,
    scoring_metric,
)
from smelt.errors import SmeltError
from smelt.eval.evaluate import evaluate
from smelt.eval.jury import disagreement_lines
from smelt.eval.reports.html import write_html_report
from smelt.eval.reports.tables import markdown_table, text_table
from smelt.files import write_json, write_text
from smelt.lm.prefill_adapter import PrefillChatAdapter, field_marker
from smelt.programs.registry import get_task
from smelt.runs import build_manifest, check_runs_root, open_run_dir, runs_root

SFT_FILE = "sft.jsonl"
TRAINING_SUMMARY = "training.json"


@dataclass
class DistillOptions(RunOptions):
    student: str | None = None  # required; None only for a --resume, which reads it from the run
    teacher: str | None = None  # a compile or sweep run directory, or a model spec; None: the latest compile run
    task: str | None = None  # None: the teacher run's task
    min_score: float = 0.5
    use_labels: bool = True
    synthetic: int = 0
    lora: dict = field(default_factory=dict)  # LoraTrainingConfig overrides, e.g. {"r": 16, "epochs": 2}
    merge: bool = False
    student_instructions: bool = False  # keep DSPy's system message (field list, instructions) in the student prompt
    resume: str | None = None


@dataclass
class Teacher:
    program: dspy.Module
    lm: object
    program_options: dict
    source: str
    run_dir: Path | None = None  # a compile run (or a sweep's best trial): what it recorded on test is reused


def resolve_teacher(options: DistillOptions, log=print) -> DistillOptions:
    """Fill in what the card's short form leaves out: ``distill --student X`` takes the most recent compile run
    (of TASK, when given) as the teacher, and a teacher run directory supplies the task."""
    from dataclasses import replace

    from smelt.runs import latest_run, read_manifest

    teacher = options.teacher
    if teacher is None:
        task_name = get_task(options.task).name if options.task else None
        found = latest_run("compile", task=task_name, root=options.runs_root)
        if found is None:
            where = runs_root(options.runs_root) / (task_name or "")
            raise SmeltError(f"no finished compile run under {where}; run `python cli.py compile "
                             f"{options.task or 'TASK'}` first, or pass --teacher RUN_DIR or a model spec")
        teacher = str(found)
        log(f"[smelt] teacher: the latest compile run, {teacher}")
    task = options.task
    if task is None:
        if not (Path(teacher) / "manifest.json").is_file():
            from smelt.lm.specs import parse_spec

            parse_spec(teacher, "--teacher")  # a path that is not there is named as such, not taken for a model
            raise SmeltError(f"--teacher {teacher} is a model spec: name the TASK too, e.g. "
                             f"`python cli.py distill doc_qa --student {options.student} --teacher {teacher}`")
        from smelt.recorded_task import recorded_task_spec

        manifest = read_manifest(teacher, "--teacher")
        task = recorded_task_spec(manifest, teacher, command="distill", option=f"--student {options.student} --teacher")
    return replace(options, teacher=teacher, task=task)


def _load_teacher(options: DistillOptions, task) -> Teacher:
    from smelt.lm import lm_for_spec

    if (Path(options.teacher) / "manifest.json").is_file():
        loaded = load_run(options.teacher, task_name=options.task, option="--teacher", device=options.device,
                          api_base=options.api_base, cache=options.cache, command="distill")
        options_used = {**task.default_options(), **(loaded.manifest.get("program_options") or {})}
        return Teacher(loaded.program, loaded.lm, options_used, f"run {options.teacher}", loaded.run_dir)
    if Path(options.teacher).exists():
        raise SmeltError(f"--teacher {options.teacher}: a folder without manifest.json; pass a compile run "
                         "directory (runs/<task>/<run>) or a model spec")
    lm = lm_for_spec(options.teacher, option="--teacher", device=options.device, api_base=options.api_base,
                     cache=options.cache)
    return Teacher(task.program(), lm, task.default_options(), f"model {options.teacher}")


def zero_shot_options(teacher_options: dict) -> dict:
    """The student's program options: the teacher's, with a plain Predict where the task has a predictor knob
    (a distilled student answers directly; that, with the smaller model, is where its speed comes from)."""
    return {**teacher_options, **({"predictor": "predict"} if "predictor" in teacher_options else {})}


def student_record(student: str, spec, instructions: bool) -> dict:
    """The manifest's record of a distilled student: what ``load_run`` needs to put it back together."""
    return {"spec": student, "kind": spec.kind, "target": spec.target, "adapter": "adapter",
            "instructions": instructions}


def _only_predictor(program: dspy.Module):
    predictors = program.predictors()
    if len(predictors) != 1:
        raise SmeltError(f"distill supports programs with one predictor; this program has {len(predictors)}")
    return predictors[0]


def sft_messages(program: dspy.Module, inputs: dict, instructions: bool = False) -> list[dict]:
    """The chat messages the zero-shot student program sends for these predictor inputs."""
    return PrefillChatAdapter(instructions=instructions).format(_only_predictor(program).signature, [], inputs)


def sft_completion(signature, outputs: dict) -> str:
    """What the student learns to write after the prefilled marker of the first output field: that field's
    value, then each further field under its own marker, then the completion marker (DSPy's chat format)."""
    values = {name: str(outputs.get(name, "")).strip() for name in signature.output_fields}
    text = PrefillChatAdapter().format_assistant_message_content(signature, values)
    return text.removeprefix(field_marker(next(iter(signature.output_fields))) + "\n").rstrip("\n")


def run_distill(options: DistillOptions, log=print):
    from smelt.lm import lm_for_spec, parse_spec
    from smelt.lm.loading import parameter_megabytes, unload_models

    started = time.perf_counter()
    if options.resume:
        from smelt.commands.resume import resumed_options

        options = resumed_options(options, "distill")
    check_runs_root(options.runs_root, options.resume)  # before any model loads
    if not options.student:
        raise SmeltError("distill needs --student, e.g. --student gemma-3-270m (see `cli.py models`)")
    options = resolve_teacher(options, log)
    task = get_task(options.task)
    student_spec = parse_spec(options.student, "--student")
    if not student_spec.in_process:
        raise SmeltError(f"--student {options.student}: the student must be an in-process model "
                         "(gemma-3-270m, an alias such as llama-3.2-3b, or hf:<id or folder>) to train an adapter")
    if not 0 <= options.min_score <= 1:
        raise SmeltError(f"--min-score {options.min_score}: use a score between 0 and 1")
    if options.synthetic < 0:
        raise SmeltError("--synthetic must be 0 or more")
    from smelt.lm.devices import resolve_device
    from smelt.optimizers.distill.lora_config import LoraTrainingConfig, default_config

    device = resolve_device(options.device)
    lora = dict(options.lora)
    if "r" in lora and "alpha" not in lora:
        lora["alpha"] = 2.0 * lora["r"]
    config = LoraTrainingConfig(**{**asdict(default_config(device)), "seed": options.seed, **lora})
    check_model_options(None, options.judge, options.metric, options.device, task)
    configure_dspy(options.threads)
    splits = load_task_data(task, options.data, options.seed)
    if not splits.train:
        raise SmeltError("the train split is empty: distill needs train inputs for the teacher to answer")
    teacher = _load_teacher(options, task)
    judge = load_judge(options)
    metric = scoring_metric(options, task, judge)
    student_options = zero_shot_options(teacher.program_options)
    student_program = task.program(student_options)

    run_dir = open_run_dir(task.name, "distill", resume=options.resume, root=options.runs_root)
    if not (run_dir / "manifest.json").exists():
        write_json(run_dir / "manifest.json", build_manifest(
            command="distill", task=task, options=asdict(options), seed=options.seed,
            models={"program": student_record(options.student, student_spec, options.student_instructions),
                    "teacher": {**teacher.lm.describe(), "source": teacher.source},
                    **({"judge": describe_judge(judge)} if judge else {})},
            data_sources=splits.sources, program_options=student_options,
            extra={"metric": metric.name, "lora": config.to_dict(), "teacher_program_options": teacher.program_options},
        ))
    log(f"[smelt] run directory: {run_dir}")

    def score(program, lm, examples, name, desc):
        return evaluate(program, examples, metric=metric, lm=lm, threads=options.threads,
                        out_path=run_dir / "eval" / f"{name}.jsonl", desc=desc,
                        latency_sample=options.latency_sample if name.endswith("test") else 0)

    # 1-3. Teacher traces -> SFT set.
    rows = build_sft_set(run_dir / SFT_FILE, task, teacher, student_program, splits.train, judge, options,
                         score=lambda program, lm, examples: score(program, lm, examples, "teacher.train",
                                                                   "teacher train"), log=log)
    counts = {source: sum(r.get("source") == source for r in rows) for source in ("teacher", "label", "synthetic")}
    log(f"[smelt] SFT set: {len(rows)} examples {counts} -> {run_dir / SFT_FILE}")

    # 4. Reference points on test, before the student is changed by training.
    if not splits.test:
        raise SmeltError("the test split is empty: distill compares teacher and student on test")
    columns = {}
    teacher_source = teacher.source
    teacher_test = score(teacher.program, teacher.lm, splits.test, "teacher.test", "teacher test")
    if teacher.run_dir is not None:  # answers DSPy had cached: tokens and latency as the teacher's run measured them
        recorded = teacher.run_dir / "eval"
        _with_recorded_usage(teacher_test, recorded / "test.jsonl", run_dir / "eval" / "teacher.test.jsonl", metric)
    columns["teacher"] = teacher_test.summary | {"model_memory_mb": _model_mb(teacher.lm, parameter_megabytes)}
    student_lm = lm_for_spec(options.student, option="--student", device=options.device, cache=options.cache)
    bare = score(student_program, student_lm, splits.test, "student.test", "student (no adapter) test")
    if teacher.run_dir is not None and _same_model(teacher.lm, student_lm):  # its baseline was the bare student
        _with_recorded_usage(bare, recorded / "baseline.test.jsonl", run_dir / "eval" / "student.test.jsonl", metric)
    columns["student (no adapter)"] = bare.summary | {"model_memory_mb": _model_mb(student_lm, parameter_megabytes)}

    # 5. Training.
    training_file = run_dir / TRAINING_SUMMARY
    if training_file.exists():
        training = json.loads(training_file.read_text())
        log(f"[smelt] reusing the trained adapter in {run_dir / 'adapter'}")
    else:
        # Training holds its own copy of the student (a served model is never changed): let the served teacher
        # and bare student go first, or a GPU holds the student's weights twice.
        teacher = student_lm = None
        unload_models()
        training = train_adapter(student_spec, config, device, rows, run_dir, resume=bool(options.resume), log=log)
        write_json(training_file, training)
    unload_models()  # the next load of the student is fresh: base weights + the saved adapter

    # 6. The distilled student, loaded back from its safetensors.
    distilled_lm = lm_for_spec(options.student, option="--student", device=options.device,
                               adapter=run_dir / "adapter", cache=options.cache,
                               instructions=options.student_instructions)
    save_program(student_program, run_dir)
    distilled = score(student_program, distilled_lm, splits.test, "test", "distilled student test")
    columns["distilled student"] = distilled.summary | {
        "model_memory_mb": _model_mb(distilled_lm, parameter_megabytes)}
    if options.merge:
        from smelt.optimizers.distill.lora_model import merge_adapter

        merged_dir = run_dir / "merged"
        if not merged_dir.exists():
            merge_adapter(distilled_lm.engine.model.get_base_model(), run_dir / "adapter", merged_dir,
                          distilled_lm.engine.tokenizer)
        log(f"[smelt] merged weights for serving: {merged_dir}")

    summary = {
        "task": task.name, "command": "distill", "student": options.student, "teacher": teacher_source,
        "metric": metric.name, "sft_examples": len(rows), "sft_sources": counts, "training": training,
        "test": columns, "wall_s": round(time.perf_counter() - started, 1), "peak_memory_mb": peak_memory_mb(),
    }
    write_json(run_dir / "summary.json", summary)
    disagreeing = [line for label, result in (("teacher", teacher_test), ("student (no adapter)", bare),
                                              ("distilled student", distilled))
                   for line in disagreement_lines(result.records, f"{label} test")]
    write_text(run_dir / "report.md", _report(summary, columns) + "".join(f"{line}\n" for line in disagreeing))
    write_html_report(run_dir, log=log)
    return run_dir, summary, text_table(columns)



def _with_recorded_usage(result, recorded: Path, out_path: Path, metric) -> None:
    """Fill cached records' tokens and latency from an earlier run's records (``eval.recorded_usage``) and sum
    ``result`` up again, keeping its one-request latency."""
    from smelt.eval.evaluate import summarize
    from smelt.eval.recorded_usage import fill_cached_usage

    if fill_cached_usage(result.records, recorded, out_path):
        kept = {k: v for k, v in result.summary.items() if k.startswith("single_request") or k == "threads"}
        result.summary = summarize(result.records, metric.name, wall_s=result.summary.get("wall_s")) | kept


def _same_model(a, b) -> bool:
    """Two resolved models that send the same prompts to the same weights (spec, dtype, adapter, prompt format)."""
    return a.lm.model == b.lm.model and getattr(a.adapter, "instructions", True) == getattr(b.adapter, "instructions",
                                                                                               True)


def _model_mb(resolved, parameter_megabytes) -> float | None:
    return parameter_megabytes(resolved.engine.model) if resolved.engine is not None else None


def _sft_rows(task, student_program, train, records, options) -> list[dict]:
    by_id = {str(r["id"]): r for r in records}
    rows = []
    for example in train:
        record = by_id.get(str(example.get("id")))
        gold = {name: example.get(name) for name in task.output_fields}
        if record and record.get("prediction") and record["score"] >= options.min_score:
            outputs, source = {task.answer_field: record["prediction"], **(record.get("outputs") or {})}, "teacher"
        elif options.use_labels and all(value not in (None, "") for value in gold.values()):
            outputs, source = gold, "label"
        else:
            continue
        rows.append(sft_row(task, student_program, example, outputs, source, options.student_instructions))
    return rows


def sft_row(task, program, example, outputs: dict, source: str, instructions: bool) -> dict:
    """One SFT example: the student's prompt for this example's inputs, and the outputs to learn (both as the
    task's predictor names them: ``Task.as_demo``)."""
    prepared = task.as_demo(program, example.copy(**outputs))
    signature = _only_predictor(program).signature
    inputs = {name: prepared.get(name) for name in signature.input_fields}
    return {"id": example.get("id"), "source": source,
            "messages": sft_messages(program, inputs, instructions),
            "completion": sft_completion(signature, {name: prepared.get(name) for name in signature.output_fields})}


def build_sft_set(sft_path: Path, task, teacher: Teacher, student_program, train, judge, options: DistillOptions,
                  *, score, log=print) -> list[dict]:
    """The SFT rows at ``sft_path``, built there first if missing: the teacher's answers on ``train`` that reach
    --min-score (gold answers standing in with --use-labels), plus --synthetic ones. ``score(program, lm,
    examples)`` runs the teacher and returns its EvalResult."""
    from smelt.optimizers.distill.sft_data import read_sft_jsonl, write_sft_jsonl

    if not sft_path.exists():
        traces = score(teacher.program, teacher.lm, train)
        failed = [r for r in traces.records if r.get("error") and not r.get("parse_error")]
        if traces.records and len(failed) == len(traces.records):
            raise SmeltError(f"every teacher call failed ({len(failed)} of {len(failed)}; the first: "
                             f"{failed[0]['error']}); check --teacher ({teacher.source}) and --api-base")
        rows = _sft_rows(task, student_program, train, traces.records, options)
        if options.synthetic:
            from smelt.optimizers.distill.synthetic_examples import write_synthetic_examples

            first_judge = judge[0] if isinstance(judge, list) else judge  # a jury's first model writes the ratings
            examples = write_synthetic_examples(task, teacher.program, teacher.lm, train, first_judge or teacher.lm,
                                                count=options.synthetic, seed=options.seed, log=log)
            rows += [sft_row(task, student_program, example, outputs, "synthetic", options.student_instructions)
                     for example, outputs in examples]
        if not rows:
            raise SmeltError(f"no training example: the teacher reached --min-score {options.min_score} on none of "
                             "the train inputs; lower --min-score or keep --use-labels")
        write_sft_jsonl(sft_path, rows)
    return read_sft_jsonl(sft_path)


def train_adapter(student_spec, config, device, rows: list[dict], run_dir: Path, *, resume: bool = False,
                  log=print) -> dict:
    """Train a LoRA adapter on the SFT rows into ``run_dir/adapter`` (checkpoints beside it); returns its summary."""
    from smelt.optimizers.distill.lora_model import load_for_training
    from smelt.optimizers.distill.lora_resources import check_fits, estimate_resources
    from smelt.optimizers.distill.lora_training import train_lora
    from smelt.optimizers.distill.sft_data import tokenize_sft

    student = load_for_training(student_spec, config, device)
    examples = [tokenize_sft(student.tokenizer, row["messages"], row["completion"]) for row in rows]
    estimate = estimate_resources(student.model, config, device,
                                  completion_tokens=max(len(e.completion_ids) for e in examples))
    log(f"[smelt] {estimate.summary()}")
    check_fits(estimate)
    result = train_lora(student.model, student.tokenizer, examples, config, run_dir, resume=resume, log=log)
    return {"steps": result.steps, "examples": result.examples, "dropped": result.dropped,
            "first_loss": round(result.losses[0], 4) if result.losses else None,
            "final_loss": round(result.losses[-1], 4) if result.losses else None,
            "tokens": result.tokens, "train_seconds": round(result.seconds, 1),
            "tokens_per_second": round(result.tokens_per_second, 1),
            "total_parameters": estimate.total_params, "trainable_parameters": estimate.trainable_params}


def _report(summary: dict, columns: dict) -> str:
    t = summary["training"]
    return "\n".join([
        f"# distill {summary['task']}: {summary['teacher']} -> {summary['student']} (LoRA)",
        "",
        f"Metric: **{summary['metric']}** on test. SFT set: {summary['sft_examples']} examples "
        f"{summary['sft_sources']}. Training: {t['steps']} steps, loss {t['first_loss']} -> {t['final_loss']}, "
        f"{t['tokens_per_second']} tokens/s, {t['trainable_parameters']:,} trainable of "
        f"{t['total_parameters']:,} parameters.",
        "",
        markdown_table(columns),
        "",
        "Files: `adapter/` (safetensors), `program.json` (the zero-shot student program), `sft.jsonl`, "
        "`train_log.jsonl`, `eval/*.jsonl`.",
    ]) + "\n"
