"""What a report shows of a finished run, read from its directory: which programs it compares on which split
(``run_sources``), their records (eval/*.jsonl) and summary columns, the title, and the program.json whose
instructions and demos it prints (``program_file``, ``program_parts``). ``run_report`` puts these together as a
``Report``, which ``smelt.eval.reports.html`` renders.

Files are read defensively: a missing file is nothing, a torn or foreign line is skipped (``report`` checks the
records first, ``check_records``), a NaN or infinite number is no number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from smelt.errors import SmeltError


@dataclass
class Program:
    """One column of the charts and examples: a program's records on the report's split, and its summary."""

    label: str
    records: list[dict]
    summary: dict = field(default_factory=dict)


@dataclass
class Report:
    """Everything report.html shows, gathered before any HTML is written."""

    title: str
    subtitle: str
    columns: dict[str, dict]  # the comparison table, as in report.md
    split: str
    programs: list[Program]
    metric: str = "score"
    program_files: list[tuple[str, Path]] = field(default_factory=list)  # (heading, program.json)
    images: list[tuple[str, Path]] = field(default_factory=list)  # further PNGs (a sweep's plots)
    notes: list[str] = field(default_factory=list)


def _no_number(_constant: str) -> None:
    """NaN, Infinity and -Infinity, which Python's json writes and reads but JSON has not: no number."""
    return None


def _record(line: str) -> tuple[dict | None, str]:
    """One line of an eval/*.jsonl file as a record, or None and why it is not one."""
    try:
        record = json.loads(line, parse_constant=_no_number)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "nested too deeply"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    return (record, "") if record.get("id") is not None else (None, "a JSON object without an id")


def read_records(path: Path) -> list[dict]:
    """The records of an eval/*.jsonl file; a torn or foreign line is skipped, a missing file is no records."""
    if not path.is_file():
        return []
    return [record for line in path.read_text(encoding="utf-8").splitlines() if (record := _record(line)[0])]


def check_records(path: Path) -> None:
    """SmeltError naming ``path``:LINE at the first line of an eval/*.jsonl file that is not a record (which
    ``read_records`` would skip)."""
    if not path.is_file():
        return
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise SmeltError(f"{path}:{line}: not valid UTF-8 text; a run's records are the UTF-8 JSON lines smelt "
                         "wrote: restore the file, or make a new run") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and _record(line)[0] is None:
            raise SmeltError(f"{path}:{number}: not a record ({_record(line)[1]}); each line of a run's eval/*.jsonl "
                             "is one example's record as smelt wrote it: restore the line, or delete it to report "
                             "without that example")


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_number)
    except (OSError, ValueError, RecursionError):  # ValueError: not JSON, or not UTF-8
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class Source:
    """Where one program's numbers of a run are: its records file and its summary column."""

    label: str
    path: Path
    column: dict
    main: bool = False  # the program the run produced (compiled, distilled, the one evaluated, the best trial)


def run_command(run_dir: Path) -> str | None:
    return read_json(run_dir / "summary.json").get("command") or read_json(run_dir / "manifest.json").get("command")


def kept_column(summary: dict) -> str:
    """A distill run's served column: ``distilled student``, or what ``--then-compile`` kept (``distilled+compiled``,
    whose test records are then eval/test.jsonl, the distilled student's eval/distilled.test.jsonl)."""
    kept = (summary.get("then_compile") or {}).get("kept") if isinstance(summary.get("then_compile"), dict) else None
    return kept if isinstance(kept, str) else "distilled student"


def run_sources(run_dir: Path, split: str | None = None) -> tuple[str, list[Source]]:
    """The report's split of a run (``split``, else test, else dev) and its programs on it, in comparison order:
    baseline -> compiled, teacher -> bare student -> distilled student, default -> best."""
    summary = read_json(run_dir / "summary.json")
    command = run_command(run_dir)
    evals = run_dir / "eval"
    if command == "compile":
        def sources(s: str) -> list[Source]:
            return [Source(f"{label} {s}", evals / f"{'baseline.' if label == 'baseline' else ''}{s}.jsonl",
                           (summary.get(label) or {}).get(s) or {}, main=label == "compiled")
                    for label in ("baseline", "compiled")]
    elif command == "distill":
        columns = summary.get("test") or {}

        def sources(s: str) -> list[Source]:
            if s != "test":
                return []
            kept = kept_column(summary)  # eval/test.jsonl is the served program's: --then-compile may keep another
            files = {"teacher": "teacher.test", "student (no adapter)": "student.test",
                     "distilled student": "test" if kept == "distilled student" else "distilled.test",
                     **({kept: "test"} if kept != "distilled student" else {})}
            return [Source(label, evals / f"{name}.jsonl", columns.get(label) or {}, main=label == kept)
                    for label, name in files.items()]
    elif command == "eval":
        program_run = Path(str(summary.get("program_run") or read_json(run_dir / "manifest.json").get(
            "program_run") or "program"))

        def sources(s: str) -> list[Source]:
            return [Source(f"{program_run.name} {s}", evals / f"{s}.jsonl", summary.get(s) or {}, main=True)]
    elif command == "sweep":
        def sources(s: str) -> list[Source]:
            return _sweep_sources(run_dir, summary) if s == "test" else []
    else:
        def sources(s: str) -> list[Source]:
            return [Source(f"{run_dir.name} {s}", evals / f"{s}.jsonl", summary.get(s) or {}, main=True)]
    for candidate in ([split] if split else ["test", "dev"]):
        found = [s for s in sources(candidate) if s.path.is_file() or s.column]
        if any(s.main and s.path.is_file() for s in found) or (found and split):
            return candidate, found
    return split or "test", []


def _sweep_sources(run_dir: Path, summary: dict) -> list[Source]:
    """The sweep's test columns (best and default), the default first; each trial's records in its run dir."""
    best = {b.get("number"): b.get("run_dir") for b in summary.get("best") or [] if isinstance(b, dict)}
    default = summary.get("default") or {}
    first_best = next(iter(best), None)
    sources = []
    for label, column in (summary.get("test") or {}).items():
        match = re.search(r"trial (\d+)", label)
        number = int(match.group(1)) if match else None
        recorded = best.get(number) or (default.get("run_dir") if number == default.get("number") else None)
        trial_dir = _trial_dir(run_dir, number, recorded)
        sources.append(Source(label, trial_dir / "eval" / "test.jsonl", column or {},
                              main=number is not None and number == first_best))
    sources.sort(key=lambda s: not ("default" in s.label and "best" not in s.label))
    return sources


def _trial_dir(run_dir: Path, number: int | None, recorded: str | None) -> Path:
    candidates = []
    if recorded:
        candidates += [Path(recorded), run_dir / "trials" / Path(recorded).name]
    if number is not None:
        candidates += [run_dir / "trials" / f"trial-{number:03d}", run_dir / "remote-trials" / f"trial-{number:03d}"]
    if recorded is None and number is None:
        candidates.append(run_dir / "default")
    return next((c for c in candidates if (c / "eval").is_dir()), candidates[0] if candidates else run_dir)


def program_file(run_dir: Path) -> Path | None:
    """The program.json a run's report shows: the run's own, a sweep's best, an eval run's program run's."""
    summary = read_json(run_dir / "summary.json")
    candidates = [run_dir / "program.json", run_dir / "best" / "program.json"]
    program_run = summary.get("program_run") or read_json(run_dir / "manifest.json").get("program_run")
    if program_run:
        candidates += [Path(program_run) / "program.json", Path(program_run) / "best" / "program.json"]
    return next((c for c in candidates if c.is_file()), None)


def run_report(run_dir: Path) -> Report:
    """The report of one run directory."""
    run_dir = Path(run_dir)
    summary = read_json(run_dir / "summary.json")
    command = run_command(run_dir) or "run"
    task = summary.get("task") or read_json(run_dir / "manifest.json").get("task") or ""
    metric = summary.get("metric") or "score"
    split, sources = run_sources(run_dir)
    programs = [Program(s.label, read_records(s.path), s.column) for s in sources]
    if command == "compile":
        columns = {f"{label} {s}": (summary.get(label) or {}).get(s)
                   for s in ("dev", "test") for label in ("baseline", "compiled")}
        title = f"compile {task} — {summary.get('optimizer') or ''} on {summary.get('lm') or ''}"
    elif command == "distill":
        columns = dict(summary.get("test") or {})
        title = f"distill {task}: {summary.get('teacher') or 'teacher'} → {summary.get('student') or 'student'}"
    elif command == "sweep":
        columns = dict(summary.get("test") or {})
        title = f"sweep {task} — stage {summary.get('stage') or ''}, objective " \
                f"{', '.join(summary.get('objectives') or ['score'])}"
    else:
        columns = {s.label: s.column for s in sources}
        title = f"{command} {task}" + (f" — {summary.get('program_run')}" if summary.get("program_run") else "")
    columns = {label: column for label, column in columns.items() if column}
    report = Report(title=title, subtitle=f"{run_dir}", columns=columns, split=split, programs=programs,
                    metric=metric)
    found = program_file(run_dir)
    if found:
        distilled = "The distilled student's program (" + (
            "zero-shot)" if kept_column(summary) == "distilled student" else "with its compiled demos)")
        heading = {"distill": distilled, "sweep": "The best trial's program",
                   "eval": "The evaluated program"}.get(command, "The compiled program")
        report.program_files.append((heading, found))
    if command == "distill":
        teacher = str(summary.get("teacher") or "")
        if teacher.startswith("run ") and (Path(teacher[4:]) / "program.json").is_file():
            report.program_files.append(("The teacher's program", Path(teacher[4:]) / "program.json"))
    if command == "sweep":
        report.images += [(name, run_dir / name) for name in summary.get("plots") or [] if (run_dir / name).is_file()]
    return report


def instructions_sent(run_dir: Path) -> bool:
    """Whether the program of ``run_dir`` is prompted with its instructions: a distilled student's lean prompt
    leaves DSPy's system message, the task's instructions with it, out (its manifest says so)."""
    program = (read_json(run_dir / "manifest.json").get("models") or {}).get("program")
    return not (isinstance(program, dict) and program.get("instructions") is False)


def program_parts(path: Path) -> list[dict]:
    """Each predictor of a DSPy JSON save: its name, instructions and demos."""
    state = read_json(path)
    parts = []
    for name, value in state.items():
        if not isinstance(value, dict) or not ("signature" in value or "demos" in value):
            continue
        signature = value.get("signature") if isinstance(value.get("signature"), dict) else {}
        demos = [d for d in value.get("demos") or [] if isinstance(d, dict)]
        parts.append({"name": name, "instructions": str(signature.get("instructions") or ""), "demos": demos})
    return parts
