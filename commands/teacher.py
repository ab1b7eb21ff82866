"""The teacher of a distillation: which one (``--teacher``, or the latest compile run), loading it, and the SFT set
it teaches (its answers on train, gold answers standing in, synthetic examples)."""

from dataclasses import dataclass
from pathlib import Path

import dspy

from smelt.errors import SmeltError
from smelt.lifecycle import latest_run, read_manifest, runs_root
from smelt.lifecycle.recorded_task import recorded_task_spec
from smelt.lifecycle.reloaded_run import load_run
from smelt.lm import lm_for_spec
from smelt.lm.specs import parse_spec
from smelt.optimizers.distill.sft_data import read_sft_jsonl, write_sft_jsonl
from smelt.optimizers.distill.sft_examples import example_rows, sft_rows
from smelt.optimizers.distill.synthetic_examples import write_synthetic_examples
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
        recorded = read_manifest(options.teacher, "--teacher").get("program_options")
        return {**task.default_options(), **(recorded if isinstance(recorded, dict) else {})}  # load_run judges it
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
        options_used = {**task.default_options(), **(loaded.manifest.get("program_options") or {})}
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
    --min-score (gold answers standing in with --use-labels), plus --synthetic ones. ``score(program, lm,
    examples)`` runs the teacher and returns its EvalResult."""
    if not sft_path.exists():
        traces = score(teacher.program, teacher.lm, train)  # every call failing stops it (ModelCallsFailed)
        rows = sft_rows(task, student_program, train, traces.records, min_score=options.min_score,
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
                             "the train inputs; lower --min-score or keep --use-labels")
        write_sft_jsonl(sft_path, rows)
    return read_sft_jsonl(sft_path)
