"""Quality across tasks: baseline -> compiled -> distilled on the same test examples, for every shipped task, in one
table.

For each task and each variant, `compile` runs through the real CLI, then `distill` with that compile run as its
teacher; the numbers are read back from the two runs' summary.json: the test score of the baseline and of the
compiled program (compile), of the distilled student (distill), the malformed answers of each (tasks declaring an
answer format), and the minutes both runs took (their wall_s). The anchor is the `default` variant of each task,
run in the same invocation.

A variant is NAME=EXTRA_ARGS. Each extra option goes to the command that has it (both when both do), except
`-o KEY=VALUE`: it goes to compile, and the distill's student takes the program options from its teacher run (distill
refuses -o with a teacher run).

    python -m bench.quality_across_tasks --out quality.md
    python -m bench.quality_across_tasks --tasks examples/inquiry_routing.toml examples/due_dates.toml \\
        --max-train 4 --max-dev 4 --max-test 4 --epochs 1
    python -m bench.quality_across_tasks --variant "no constraints=-o constrain=false" \\
        --variant "four attempts=--teacher-attempts 4" --variant "likelihood=-o choice=likelihood"
"""

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.machine import cpu_name
from smelt.errors import SmeltError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TASKS = ("doc_qa", "rag_qa", "rag_qa -o rewrite=true", "examples/inquiry_routing.toml",
                 "examples/due_dates.toml")
DEFAULT_VARIANT = "default"
DISTILLED = "distilled student"  # the distill summary's column of the student with its adapter
MALFORMED_HEADER = "malformed (baseline/compiled/distilled)"
COLUMNS = ("task", "variant", "baseline", "compiled", "distilled", MALFORMED_HEADER, "minutes")


@dataclass(frozen=True)
class Variant:
    name: str
    compile_args: tuple[str, ...]
    distill_args: tuple[str, ...]


@dataclass(frozen=True)
class TaskSpec:
    """A task as --tasks names it ("rag_qa -o rewrite=true"): the TASK argument and its own options."""
    spec: str
    task: str
    compile_args: tuple[str, ...]
    distill_args: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    """One task under one variant, as its compile and distill runs recorded it (None: the run did not say)."""
    task: str
    variant: str
    metric: str | None = None
    examples: int | None = None
    baseline: float | None = None
    compiled: float | None = None
    distilled: float | None = None
    malformed: tuple[int | None, int | None, int | None] = (None, None, None)
    minutes: float | None = None
    failed: str | None = None  # the step that failed and its last line


def _options_of(command: str) -> dict[str, object]:
    """Every option string of a CLI command (`-o`, `--option`, `--no-cache`, ...) -> its click parameter."""
    from smelt.cli import cli

    params = cli.commands[command].params
    return {flag: param for param in params for flag in (*param.opts, *param.secondary_opts) if flag.startswith("-")}


def route_args(args: list[str], where: str) -> tuple[list[str], list[str]]:
    """Split extra CLI arguments into (compile's, distill's): an option goes to each command that has it, `-o` only
    to compile (a distill with a teacher run takes the run's program options). ``where`` names them in errors."""
    compile_options, distill_options = _options_of("compile"), _options_of("distill")
    to_compile, to_distill = [], []
    i = 0
    while i < len(args):
        flag, inline = (args[i].split("=", 1)[0], True) if args[i].startswith("--") and "=" in args[i] \
            else (args[i], False)
        param = compile_options.get(flag) or distill_options.get(flag)
        if param is None:
            raise SmeltError(f"{where}: {args[i]!r} is not an option of compile or distill (see `python cli.py "
                             "compile --help` and `python cli.py distill --help`)")
        takes_value = not (param.is_flag or param.count) and not inline
        if takes_value and i + 1 >= len(args):
            raise SmeltError(f"{where}: {flag} needs a value")
        piece = args[i:i + 2] if takes_value else args[i:i + 1]
        if flag in compile_options:
            to_compile += piece
        if flag in distill_options and param.name != "option_pairs":
            to_distill += piece
        i += len(piece)
    return to_compile, to_distill


def parse_variant(text: str) -> Variant:
    """'NAME=EXTRA ARGS' (the args as a shell would split them) -> a Variant."""
    name, sep, extra = text.partition("=")
    if not sep or not name.strip() or name.startswith("-"):
        raise SmeltError(f"--variant {text!r}: give NAME=EXTRA_ARGS, e.g. --variant \"no constraints=-o "
                         "constrain=false\"")
    compile_args, distill_args = route_args(shlex.split(extra), f"--variant {name.strip()}")
    return Variant(name.strip(), tuple(compile_args), tuple(distill_args))


def parse_task(spec: str) -> TaskSpec:
    """'rag_qa -o rewrite=true' -> a TaskSpec (its -o options go to compile, as a variant's do)."""
    words = shlex.split(spec)
    if not words or words[0].startswith("-"):
        raise SmeltError(f"--tasks {spec!r}: give a TASK first, e.g. \"rag_qa -o rewrite=true\"")
    compile_args, distill_args = route_args(words[1:], f"--tasks {spec!r}")
    return TaskSpec(spec, words[0], tuple(compile_args), tuple(distill_args))


def _read_summary(run_dir: Path) -> dict:
    from smelt.lifecycle.run_scores import read_summary

    return read_summary(run_dir, strict=True)


def row_from_runs(task: str, variant: str, compile_dir: Path | None, distill_dir: Path | None,
                  failed: str | None = None) -> Row:
    """The table's row for one task and variant, from its compile run and its distill run (either may be missing
    when a step failed)."""
    compiled_run = _read_summary(compile_dir) if compile_dir else {}
    distilled_run = _read_summary(distill_dir) if distill_dir else {}
    baseline_test = (compiled_run.get("baseline") or {}).get("test") or {}
    compiled_test = (compiled_run.get("compiled") or {}).get("test") or {}
    distilled_test = (distilled_run.get("test") or {}).get(DISTILLED) or {}
    walls = [run["wall_s"] for run in (compiled_run, distilled_run) if isinstance(run.get("wall_s"), int | float)]
    return Row(task=task, variant=variant, metric=compiled_run.get("metric") or distilled_run.get("metric"),
               examples=compiled_test.get("examples", distilled_test.get("examples")),
               baseline=baseline_test.get("score"), compiled=compiled_test.get("score"),
               distilled=distilled_test.get("score"),
               malformed=tuple(column.get("malformed") for column in (baseline_test, compiled_test, distilled_test)),
               minutes=sum(walls) / 60 if walls else None, failed=failed)


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _cells(row: Row) -> list[str]:
    described = ", ".join([*([row.metric] if row.metric else []),
                           *([f"n={row.examples}"] if row.examples is not None else [])])
    malformed = "—" if all(m is None for m in row.malformed) else \
        "/".join("—" if m is None else str(m) for m in row.malformed)
    return [f"{row.task} ({described})" if described else row.task, row.variant, _score(row.baseline),
            _score(row.compiled), _score(row.distilled), malformed,
            "—" if row.minutes is None else f"{row.minutes:.1f}"]


def markdown_table(rows: list[Row]) -> str:
    """One Markdown table, a row per task and variant, then a line for each row whose runs failed."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    lines += [f"\n{row.task} / {row.variant}: {row.failed}" for row in rows if row.failed]
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "x"


def _run_cli(command: str, args: list[str], runs_root: Path, log_path: Path) -> tuple[Path | None, str | None]:
    """Run one CLI command with its output in ``log_path``; (the run directory it made, None) or (None, why not)."""
    before = set(runs_root.glob(f"*/*-{command}"))
    with log_path.open("w", encoding="utf-8") as log:
        result = subprocess.run([sys.executable, str(ROOT / "cli.py"), command, *args, "--runs-root", str(runs_root)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    made = sorted(set(runs_root.glob(f"*/*-{command}")) - before)
    if result.returncode != 0 or len(made) != 1:
        lines = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {result.returncode}"
        return None, f"{command} failed: {last} (log: {log_path})"
    return made[0], None


def run_cell(task: TaskSpec, variant: Variant, common: list[str], compile_only: list[str], distill_only: list[str],
             runs_root: Path) -> Row:
    """compile TASK, then distill with that run as the teacher, in a runs folder of their own; the row they give."""
    folder = runs_root / _slug(variant.name) / _slug(task.spec)
    folder.mkdir(parents=True, exist_ok=True)
    compile_args = [task.task, *task.compile_args, *common, *compile_only, *variant.compile_args]
    compile_dir, failed = _run_cli("compile", compile_args, folder, folder / "compile.log")
    distill_dir = None
    if compile_dir:
        distill_args = ["--teacher", str(compile_dir), *task.distill_args, *common, *distill_only,
                        *variant.distill_args]
        distill_dir, failed = _run_cli("distill", distill_args, folder, folder / "distill.log")
    return row_from_runs(task.spec, variant.name, compile_dir, distill_dir, failed)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK",
                        help="the tasks, each a TASK as compile takes it, optionally with its -o options in the same "
                             "argument (\"rag_qa -o rewrite=true\"); default: " + ", ".join(DEFAULT_TASKS))
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=EXTRA_ARGS",
                        help="run every task again with these extra options (repeatable), e.g. \"no constraints=-o "
                             "constrain=false\" or \"four attempts=--teacher-attempts 4\"; the variant 'default' (no "
                             "extra options) always runs first, as the anchor, unless given here with its own")
    parser.add_argument("--runs-root", type=Path,
                        help="where the run directories go and stay (default: a temporary folder, removed at the end)")
    parser.add_argument("--out", type=Path, help="also write the table as Markdown to this file")
    parser.add_argument("--student", default="gemma-3-270m", help="distill's --student (default: gemma-3-270m)")
    parser.add_argument("--lm", help="compile's --lm (default: compile's own, the embedded model)")
    parser.add_argument("--max-train", type=int, help="passed to compile and distill: the first N train examples")
    parser.add_argument("--max-dev", type=int, help="passed to compile and distill: the first N dev examples")
    parser.add_argument("--max-test", type=int, help="passed to compile and distill: the first N test examples")
    parser.add_argument("--epochs", type=int, help="passed to distill (default: distill's own)")
    parser.add_argument("--threads", type=int, help="passed to compile and distill (default: theirs)")
    parser.add_argument("--no-cache", action="store_true",
                        help="passed to compile and distill: every answer from the model, none from DSPy's cache "
                             "(so the minutes count every model call)")
    parser.add_argument("--latency-sample", type=int, default=0,
                        help="passed to compile and distill; the table shows no latency, so 0 (skip) by default")
    return parser


def _header(arguments, command_line: str) -> str:
    return (f"Quality across tasks, {datetime.now():%Y-%m-%d %H:%M}, on {cpu_name()}: test scores of the baseline, "
            f"the compiled program (compile, --lm {arguments.lm or 'default'}) and the distilled student (distill "
            f"--student {arguments.student}, the compile run as teacher); minutes = both runs' wall time.\n\n"
            f"`{command_line}`")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:  # every task and variant is checked before the first run starts
        tasks = [parse_task(spec) for spec in arguments.tasks]
        variants = [parse_variant(text) for text in arguments.variant]
    except SmeltError as exc:
        parser.error(str(exc))
    if not any(v.name == DEFAULT_VARIANT for v in variants):
        variants.insert(0, Variant(DEFAULT_VARIANT, (), ()))
    common = [arg for name in ("max_train", "max_dev", "max_test", "threads", "latency_sample")
              if getattr(arguments, name) is not None
              for arg in (f"--{name.replace('_', '-')}", str(getattr(arguments, name)))]
    common += ["--no-cache"] if arguments.no_cache else []
    compile_only = ["--lm", arguments.lm] if arguments.lm else []
    distill_only = ["--student", arguments.student, *(["--epochs", str(arguments.epochs)] if arguments.epochs else [])]
    command_line = "python -m bench.quality_across_tasks " + shlex.join(sys.argv[1:] if argv is None else argv)

    with tempfile.TemporaryDirectory(prefix="smelt-quality-") as scratch:
        runs_root = arguments.runs_root or Path(scratch)
        rows = []
        for task in tasks:
            for variant in variants:
                started = time.perf_counter()
                print(f"[bench] {task.spec} / {variant.name} ...", file=sys.stderr, flush=True)
                rows.append(run_cell(task, variant, common, compile_only, distill_only, runs_root))
                print(f"[bench] {task.spec} / {variant.name}: {rows[-1].failed or 'done'} "
                      f"({(time.perf_counter() - started) / 60:.1f} min)", file=sys.stderr, flush=True)
    text = f"{_header(arguments, command_line)}\n\n{markdown_table(rows)}\n"
    print(text)
    if arguments.out:
        arguments.out.write_text(text, encoding="utf-8")
        print(f"written to {arguments.out}")
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
