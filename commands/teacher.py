"""The teacher of a distillation: which one (``--teacher``, or the latest compile run), loading it, and the SFT set
it teaches (its answers on train, gold answers standing in, synthetic examples)."""

from dataclasses import dataclass
from pathlib import Path

import dspy

from smelt.errors import SmeltError
from smelt.lifecycle import latest_run, read_manifest, runs_root
from smelt.lifecycle.recorded_task import recorded_task_spec
from smelt.lifecycle.reloaded_run import load_run, recorded_program_options
from smelt.lm import lm_for_spec
from smelt.lm.specs import parse_spec
from smelt.optimizers.distill.sft_data import read_sft_jsonl, write_sft_jsonl
from smelt.optimizers.distill.sft_examples import example_rows, sft_counts_by_predictor, sft_rows
from smelt.optimizers.distill.synthetic_examples import write_synthetic_examples
from smelt.optimizers.distill.teacher_attempts import attempt_lm, attempt_name, attempted_records, attempts_account
from smelt.programs.registry import get_task


@dataclass
class Teacher:
    program: dspy.Module
    lm: object
    program_options: dict
    source: str
    run_dir: Path | None = None  # a compile run (or a sweep's best trial): what it recorded on test is reused


def resolve_teacher(options, log=print):
    """Fill in what the card's short form leaves out: ``distill --student X`` takes the most recent compile run
    (of TASK, when given) as the teacher, and a teacher run directory supplies the task."""
    from dataclasses import replace

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
            parse_spec(teacher, "--teacher")  # a path that is not there is named as such, not taken for a model
            raise SmeltError(f"--teacher {teacher} is a model spec: name the TASK too, e.g. "
                             f"`python cli.py distill doc_qa --student {options.student} --teacher {teacher}`")

        manifest = read_manifest(teacher, "--teacher")
        task = recorded_task_spec(manifest, teacher, command="distill", option=f"--student {options.student} --teacher")
    return replace(options, teacher=teacher, task=task)


def teacher_program_options(options, task) -> dict:
    """The program options the teacher runs with, read before it loads: a run's recorded ones, or -o on the task's
    defaults for a model spec (what ``load_teacher`` gives its program)."""
    if (Path(options.teacher) / "manifest.json").is_file():
        recorded = recorded_program_options(read_manifest(options.teacher, "--teacher"))
        return {**task.default_options(), **recorded}  # load_run judges it
    return {**task.default_options(), **options.program_options}


def load_teacher(options, task, log=print) -> Teacher:
    """The teacher --teacher names: a run's program on its model (a server model on --api-base, else on the API
    base the run recorded; ``log`` hears which), or the uncompiled program on a model spec."""
    if (Path(options.teacher) / "manifest.json").is_file():
        if options.program_options:
            given = " ".join(f"-o {key}={value}" for key, value in options.program_options.items())
            raise SmeltError(f"{given}: the teacher run {options.teacher} brings its own program options; -o applies "
                             "to a model-spec --teacher (compile with -o, then distill that run)")
        loaded = load_run(options.teacher, task_name=options.task, option="--teacher", device=options.device,
                          api_base=options.api_base, cache=options.cache, command="distill", log=log)
        options_used = {**task.default_options(), **recorded_program_options(loaded.manifest)}
        return Teacher(loaded.program, loaded.lm, options_used, f"run {options.teacher}", loaded.run_dir)
    if Path(options.teacher).exists():
        raise SmeltError(f"--teacher {options.teacher}: a folder without manifest.json; pass a compile run "
                         "directory (runs/<task>/<run>) or a model spec")
    lm = lm_for_spec(options.teacher, option="--teacher", device=options.device, api_base=options.api_base,
                     cache=options.cache)
    program_options = {**task.default_options(), **options.program_options}
    return Teacher(task.program(program_options), lm, program_options, f"model {options.teacher}")


def build_sft_set(sft_path: Path, task, teacher: Teacher, student_program, train, judge, options,
                  *, score, log=print) -> list[dict]:
    """The SFT rows at ``sft_path``, built there first if missing: the teacher's answers on ``train`` that reach
    --min-score, each input tried up to --teacher-attempts times (``optimizers.distill.teacher_attempts``; gold
    answers standing in with --use-labels), plus --synthetic ones. ``score(program, lm, examples, name)`` runs the
    teacher into ``eval/<name>.jsonl`` and returns its EvalResult."""
    if not sft_path.exists():
        def run_attempt(attempt: int, examples: list) -> list[dict]:
            if attempt > 1:
                log(f"[smelt] teacher attempt {attempt} of {options.teacher_attempts}: {len(examples)} train inputs "
                    f"below --min-score {options.min_score}, sampled at temperature {options.teacher_temperature}")
            lm = attempt_lm(teacher.lm, attempt, options.teacher_temperature, options.seed)
            return score(teacher.program, lm, examples, attempt_name(attempt)).records  # all calls failing: stops

        records = attempted_records(train, run_attempt, attempts=options.teacher_attempts, min_score=options.min_score)
        rows = sft_rows(task, student_program, train, records, min_score=options.min_score,
                        use_labels=options.use_labels, instructions=options.student_instructions)
        if options.synthetic:
            first_judge = judge[0] if isinstance(judge, list) else judge  # a jury's first model writes the ratings
            examples = write_synthetic_examples(task, teacher.program, teacher.lm, train, first_judge or teacher.lm,
                                                count=options.synthetic, seed=options.seed, log=log)
            rows += [row for example, outputs in examples
                     for row in example_rows(task, student_program, example, outputs, "synthetic",
                                             options.student_instructions)]
        if not rows:
            raise SmeltError(f"no training example: the teacher reached --min-score {options.min_score} on none of "
                             f"the train inputs in {options.teacher_attempts} attempt(s) each; raise "
                             "--teacher-attempts, lower --min-score or keep --use-labels")
        write_sft_jsonl(sft_path, rows)
    return read_sft_jsonl(sft_path)


def check_attempt_options(options) -> None:
    """--teacher-attempts and --teacher-temperature, refused in one line before any model loads."""
    if options.teacher_attempts < 1:
        raise SmeltError(f"--teacher-attempts {options.teacher_attempts}: use 1 or more (1: the teacher answers each "
                         "train input once, greedily)")
    if not 0 < options.teacher_temperature <= 2:
        raise SmeltError(f"--teacher-temperature {options.teacher_temperature}: use a temperature above 0 and at "
                         "most 2 (the later attempts sample; 0.7 by default)")


def sft_set_account(rows: list[dict], train_size: int, student_program, options) -> dict:
    """What summary.json records of an SFT set: its rows per source and per predictor, and what the teacher's
    attempts kept (``attempts_account``)."""
    return {"sft_examples": len(rows),
            "sft_sources": {source: sum(r.get("source") == source for r in rows)
                            for source in ("teacher", "label", "synthetic")},
            "sft_predictors": sft_counts_by_predictor(student_program, rows),
            "teacher_attempts": attempts_account(rows, train_size, attempts=options.teacher_attempts,
                                                 temperature=options.teacher_temperature)}


def sft_set_lines(account: dict) -> list[str]:
    """The SFT set in two lines, for the printed table, report.md and the log: its rows per predictor and source,
    and the train inputs the teacher's attempts kept (at which attempt, in how many runs)."""
    per_predictor = ", ".join(f"{name} {n}" for name, n in account["sft_predictors"].items())
    sources = ", ".join(f"{source} {n}" for source, n in account["sft_sources"].items() if n)
    attempts = account.get("teacher_attempts")
    lines = [f"SFT rows: {per_predictor} ({account['sft_examples']} in all: {sources or 'none'})"]
    if attempts:
        at = ", ".join(f"{k}: {n}" for k, n in attempts["kept_by_attempt"].items())
        sampled = f"; later attempts sampled at temperature {attempts['temperature']}" if attempts["max"] > 1 else ""
        lines.append(f"Teacher: kept {attempts['kept']} of {attempts['inputs']} train inputs in {attempts['runs']} "
                     f"runs (kept at attempt {at}{sampled})")
    return lines
