"""Label choice: generation (free, the anchor; and held to the labels) against the label the model finds most
likely, uncalibrated and calibrated (``-o choice=likelihood``), on a label task's test split, zero-shot and with the
demos of its default compile.

    python -m bench.label_choice                                  # examples/inquiry_routing.toml, all of test
    python -m bench.label_choice --program runs/inquiry_routing/<compile run> --max-test 10
    python -m bench.label_choice --program runs/inquiry_routing/<distill run>    # the distilled student

Every test example is answered four ways by the same program (the same prompt): free generation (choice=generate,
constrain=false), generation held to the labels (constrain=true, the default), and the label with the highest
likelihood, uncalibrated and calibrated against the labels' prior on content-free inputs (choice=likelihood,
smelt.programs.label_choice); the last two come from the same label scores. The demos and the model are those of a
run (--program: a distilled student has no demos, and its adapter), else the demos of a compile run made here for
them with the task's default optimizer, on --lm:
`cli.py compile TASK --max-dev 1 --max-test 0 --latency-sample 0` (it scores one dev example, nothing else).

Prints test accuracy (and per language where the data says it), how often the most frequent answer was given, and
the seconds per answer (--threads in flight), with the machine.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.machine import cpu_name
from smelt.errors import SmeltError

ROOT = Path(__file__).resolve().parents[1]
# (row name, program options) of the generated answers; the likelihood rows follow them.
GENERATED = (("free generation", {"choice": "generate", "constrain": False}),
             ("generation held to the labels", {"choice": "generate", "constrain": True}))
CHOSEN = ("likelihood, uncalibrated", "likelihood, calibrated")


@dataclass(frozen=True)
class Result:
    setting: str
    method: str
    answers: list
    golds: list
    languages: list
    seconds: float


def compiled_program_json(task_path: str, runs_root: Path) -> Path:
    """A compile run of the task's default optimizer, made only for its program.json."""
    command = [sys.executable, str(ROOT / "cli.py"), "compile", task_path, "--max-dev", "1", "--max-test", "0",
               "--latency-sample", "0", "--runs-root", str(runs_root)]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    [program_json] = runs_root.glob("*/*-compile/program.json")
    return program_json


def program_with(task, options: dict, program_json: Path | None):
    from smelt.programs.program_file import load_program_file

    program = task.program(options)
    if program_json is not None:
        load_program_file(program, program_json, task_name=task.name, log=lambda message: None)
    return program


def answer_all(function, examples: list, threads: int) -> tuple[list, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(function, examples))
    return answers, (time.perf_counter() - started) / max(len(examples), 1)


def generated(task, options: dict, program_json, resolved, examples: list, threads: int) -> tuple[list, float]:
    program = program_with(task, options, program_json)

    def answer(example):
        with resolved.context():
            try:
                return program(**example.inputs()).get(task.answer_field)
            except Exception as exc:  # noqa: BLE001 - an answer that does not parse is a wrong answer here
                return f"<{type(exc).__name__}>"

    return answer_all(answer, examples, threads)


def chosen(task, program_json, resolved, examples: list, threads: int) -> tuple[list, list, float]:
    """The uncalibrated and the calibrated label of each example, from one scoring of the labels each."""
    from smelt.programs.label_choice import LabelScorer, calibrated_scores

    [predictor] = program_with(task, {"choice": "likelihood"}, program_json).predictors()
    scorer = LabelScorer(resolved.engine, predictor.signature, predictor.demos, resolved.adapter, predictor.labels,
                         resolved.lm.model)
    labels = predictor.labels

    def pick(scores):
        return labels[max(range(len(labels)), key=scores.__getitem__)]

    def both(example):
        logprobs = scorer.scores({name: example.get(name) for name in predictor.signature.input_fields})
        return pick(calibrated_scores(logprobs, None)), pick(calibrated_scores(logprobs, scorer.cached_prior()))

    pairs, seconds = answer_all(both, examples, threads)
    return [raw for raw, _ in pairs], [calibrated for _, calibrated in pairs], seconds


def table(results: list[Result], labels: tuple[str, ...]) -> str:
    from smelt.eval.metrics import accuracy

    languages = sorted({language for result in results for language in result.languages if language})
    header = ["setting", "method", "accuracy", *(f"accuracy, {lang}" for lang in languages),
              "most frequent answer (share)", "s / answer"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        scores = [accuracy(str(answer or ""), gold, labels) for answer, gold in zip(result.answers, result.golds,
                                                                                      strict=True)]
        by_language = [statistics.mean([s for s, lang in zip(scores, result.languages, strict=True) if lang == language]
                                       or [0.0]) for language in languages]
        answer, count = Counter(map(str, result.answers)).most_common(1)[0]
        cells = [result.setting, result.method, f"{statistics.mean(scores):.3f} ({sum(scores):.0f}/{len(scores)})",
                 *(f"{value:.3f}" for value in by_language), f"{answer} ({count}/{len(result.answers)})",
                 f"{result.seconds:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="examples/inquiry_routing.toml", help="a label task (default: %(default)s)")
    parser.add_argument("--program", help="a compile or distill run of TASK: its demos, on its own model (a distilled "
                                          "student with its adapter); default: a compile run made here, on --lm")
    parser.add_argument("--lm", default="gemma-3-270m", help="the model without --program (default: %(default)s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-test", type=int, help="only the first N test examples")
    parser.add_argument("--threads", type=int, default=8, help="answers in flight (default: %(default)s)")
    args = parser.parse_args(argv)

    from smelt.lifecycle.reloaded_run import load_run
    from smelt.lm import lm_for_spec
    from smelt.programs.registry import get_task

    task = get_task(args.task)
    if not task.answer_labels:
        raise SmeltError(f"--task {args.task}: declares no labels; label choice needs a label task")
    test = list(task.shipped_data().test)[: args.max_test]
    with tempfile.TemporaryDirectory() as scratch:
        if args.program:
            program_json = Path(args.program) / "program.json"
            resolved = load_run(args.program, device=args.device, cache=False).lm
        else:
            program_json = compiled_program_json(args.task, Path(scratch))
            resolved = lm_for_spec(args.lm, device=args.device, cache=False)
        golds = [example.get(task.answer_field) for example in test]
        languages = [example.get("language") for example in test]
        demos = sum(len(p.demos) for p in program_with(task, {}, program_json).predictors())
        results = []
        for setting, demos_from in (("zero-shot", None), *([(f"{demos} demos", program_json)] if demos else [])):
            for method, options in GENERATED:
                answers, seconds = generated(task, options, demos_from, resolved, test, args.threads)
                results.append(Result(setting, method, answers, golds, languages, seconds))
            raw, calibrated, seconds = chosen(task, demos_from, resolved, test, args.threads)
            results += [Result(setting, CHOSEN[0], raw, golds, languages, seconds),
                        Result(setting, CHOSEN[1], calibrated, golds, languages, seconds)]
    print(f"{task.name}: {len(test)} test examples, {resolved.lm.model} on {args.device} ({cpu_name()}), "
          f"{args.threads} in flight; the two likelihood rows share one scoring of the labels (one time)")
    print(table(results, task.answer_labels))


if __name__ == "__main__":
    try:
        main()
    except SmeltError as exc:
        sys.exit(f"error: {exc}")
