"""``report``: one report.html comparing finished runs on the split they were all scored on.

Each run contributes the program it produced (a compile run's compiled program, a distill run's distilled student,
an eval run's program, a sweep's best trial), read from its records (eval/test.jsonl, else eval/dev.jsonl): no
model is loaded and nothing is scored again. One run directory gives the same page as its own report.html.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from smelt.errors import SmeltError
from smelt.eval.reports.html import GENERATOR_TAG, render_html
from smelt.eval.reports.run_records import (
    Program,
    Report,
    check_records,
    program_file,
    read_json,
    read_records,
    run_command,
    run_report,
    run_sources,
)
from smelt.files import write_text
from smelt.lifecycle import enclosing_run, resume_command

SPLITS = ("test", "dev")


def summarize_records(records: list[dict], metric: str) -> dict:
    """The comparison table's numbers, from records alone (a subset of a run's examples has no summary of its own)."""
    def mean(values):
        values = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        return round(statistics.fmean(values), 4) if values else None

    called = [r for r in records if not r.get("cached") or r.get("prompt_tokens")]
    extra_names = dict.fromkeys(name for r in records for name in r.get("scores") or {})
    extra = {name: mean([(r.get("scores") or {}).get(name) for r in records]) for name in extra_names}
    return {
        "metric": metric, "examples": len(records), "score": mean([r.get("score") for r in records]),
        "parse_failures": sum(bool(r.get("parse_error")) for r in records),
        "errors": sum(bool(r.get("error")) and not r.get("parse_error") and not r.get("judge_error") for r in records),
        "latency_s_per_example": mean([r.get("latency_s") for r in called]),
        "prompt_tokens_per_example": mean([r.get("prompt_tokens") for r in called]),
        "completion_tokens_per_example": mean([r.get("completion_tokens") for r in called]),
        "lm_calls": sum(int(r.get("lm_calls") or 0) for r in records),
        **({"scores": extra} if extra else {}),
    }


def _check_run(path: Path) -> None:
    """A finished run with at least one answer to show."""
    if not path.is_dir():
        raise SmeltError(f"{path}: no such run directory")
    command = run_command(path)
    if not command:
        raise SmeltError(f"{path} is not a run directory (no summary.json or manifest.json naming its command)")
    if not (path / "summary.json").is_file():
        raise SmeltError(f"{path}: the run has not finished (no summary.json), so there is nothing to report yet; "
                         f"finish it with `{resume_command(command, path)}`")
    _, sources = run_sources(path)
    for source in sources:
        check_records(source.path)  # a broken line is named, not skipped
    records = [r for s in sources if s.path.is_file() for r in read_records(s.path)]
    if not any(not r.get("error") or r.get("parse_error") for r in records):
        raise SmeltError(f"{path}: no example was answered (no records, or every model call failed), so there is "
                         "nothing to report; fix the model (see the errors in its eval/*.jsonl) and make a new run")


def _labels(dirs: list[Path]) -> list[str]:
    """Each run's folder name; where two share one, the task folder in front."""
    names = [d.resolve().name for d in dirs]
    labels = [f"{d.resolve().parent.name}/{d.resolve().name}" if names.count(d.resolve().name) > 1 else n
              for d, n in zip(dirs, names, strict=True)]
    return [label if labels.count(label) == 1 else f"{label} ({i + 1})" for i, label in enumerate(labels)]


def compare_runs(run_dirs: list[str | Path]) -> Report:
    """The report comparing the runs' programs on their shared split and example ids (SmeltError when none)."""
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise SmeltError("report needs at least one RUN_DIR")
    for path in dirs:
        _check_run(path)
    if len(dirs) == 1:
        return run_report(dirs[0])
    mains: dict[str, list] = {}
    for split in SPLITS:
        found = []
        for path in dirs:
            _, sources = run_sources(path, split)
            found.append(next((s for s in sources if s.main and s.path.is_file()), None))
        mains[split] = found
    split = next((s for s in SPLITS if all(mains[s])), None)
    if split is None:
        have = "; ".join(f"{path}: {', '.join(s for s in SPLITS if mains[s][i]) or 'no eval/test.jsonl or dev.jsonl'}"
                         for i, path in enumerate(dirs))
        raise SmeltError(f"the runs share no scored split (test or dev) to compare on ({have})")
    metrics = [read_json(path / "summary.json").get("metric") or read_json(path / "manifest.json").get("metric")
               for path in dirs]
    if len({m for m in metrics if m}) > 1:
        named = ", ".join(f"{path.name}: {m}" for path, m in zip(dirs, metrics, strict=True))
        raise SmeltError(f"the runs were scored with different metrics ({named}); their scores do not compare")
    for source in mains[split]:
        check_records(source.path)
    records = [read_records(source.path) for source in mains[split]]
    shared = set.intersection(*({str(r["id"]) for r in rs} for rs in records))
    if not shared:
        raise SmeltError(f"the runs share no example ids on {split}: they were scored on different data")
    metric = next((m for m in metrics if m), "score")
    programs, columns, notes = [], {}, []
    for path, label, source, run_records in zip(dirs, _labels(dirs), mains[split], records, strict=True):
        kept = [r for r in run_records if str(r["id"]) in shared]
        whole = len(kept) == len(run_records) and source.column
        column = source.column if whole else summarize_records(kept, metric)
        programs.append(Program(label, kept, column))
        columns[label] = column
        notes.append(f"{label}: {source.label} of {path}")
    if any(len(rs) != len(shared) for rs in records):
        notes.append(f"Compared on the {len(shared)} {split} examples every run scored "
                     f"(of {', '.join(str(len(rs)) for rs in records)}).")
    tasks = dict.fromkeys(read_json(p / "summary.json").get("task") or read_json(p / "manifest.json").get("task")
                          for p in dirs)
    report = Report(title=f"{len(dirs)} runs of {', '.join(t for t in tasks if t) or 'a task'} on {split}",
                    subtitle=", ".join(str(p) for p in dirs), columns=columns, split=split, programs=programs,
                    metric=metric, notes=notes)
    for path, label in zip(dirs, _labels(dirs), strict=True):
        found = program_file(path)
        if found:
            report.program_files.append((label, found))
    return report


def write_comparison(run_dirs: list[str | Path], out: str | Path = "report.html", *, force: bool = False) -> Path:
    """Write the comparison page to ``out`` (its folder made if missing); returns its path. Inside a run directory
    only a new file is written; elsewhere an existing file is replaced only when it is a page smelt wrote, or with
    ``force``."""
    path = Path(out)
    if path.is_dir():
        path = path / "report.html"
    _check_out(path, out, force)
    report = compare_runs(run_dirs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, render_html(report))
    except OSError as exc:
        raise SmeltError(f"--out {out}: cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _check_out(path: Path, out, force: bool) -> None:
    """Where a report may go: never over a file of a run, never over another file unless it is a smelt page or
    ``force`` says so."""
    target = path.resolve()  # a link into a run is the run's file
    run = enclosing_run(target.parent)
    if run is not None and (target.exists() or target.is_symlink()):
        raise SmeltError(f"--out {out}: {target} is a file of run {run}, and a report never replaces a run's files; "
                         "write the page elsewhere (e.g. --out compare.html)")
    if not target.exists() or force:
        return
    if not target.is_file():
        raise SmeltError(f"--out {out}: {target} exists and is not a file; choose another path")
    if target.suffix.lower() not in (".html", ".htm") or GENERATOR_TAG not in _head(target):
        raise SmeltError(f"--out {out}: {target} exists and is not a report smelt wrote; choose another path, or "
                         "pass --force to replace it")


def _head(path: Path) -> str:
    try:
        with path.open("rb") as file:
            return file.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return ""
