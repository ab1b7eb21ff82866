"""report.html: the run's comparison as one self-contained page (inline CSS, charts as base64 PNG, no script,
no network), for a person and for a browser on a machine with no internet.

What it holds, for a compile, distill, eval or sweep run (and for several runs: ``commands.report``):

- the comparison table of report.md (``smelt.eval.reports.tables.comparison_rows``);
- the score per language (Japanese, English) of each program, baseline -> compiled -> distilled;
- a radar of each program over score, exact match, fact, grounding, speed and prompt tokens (the axes the records
  support), each scaled so that bigger is better;
- ten example answers side by side, the worst regressions (first program -> last) first, both languages;
- the compiled program's instructions and demos (from program.json).

Records (eval/*.jsonl) are read defensively: a field a record lacks leaves its chart, axis or cell out.
"""

from __future__ import annotations

import html
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from smelt.eval.reports import plots

REPORT_FILE = "report.html"
# In every page's head: `report --out` replaces an existing file only when it is a page smelt wrote.
GENERATOR_TAG = "<meta name='generator' content='smelt'>"
EXAMPLES = 10
LANGUAGE_NAMES = {"ja": "Japanese", "en": "English"}

_KANA_OR_IDEOGRAPH = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f\u3005\u3006\u3400-\u4dbf\u4e00-\u9fff"
                                "\uf900-\ufaff]")
_LATIN = re.compile("[A-Za-z]")


@dataclass
class Program:
    """One column of the charts and examples: a program's records on the report's split, and its summary."""

    label: str
    records: list[dict]
    summary: dict = field(default_factory=dict)


@dataclass
class Report:
    title: str
    subtitle: str
    columns: dict[str, dict]  # the comparison table, as in report.md
    split: str
    programs: list[Program]
    metric: str = "score"
    program_files: list[tuple[str, Path]] = field(default_factory=list)  # (heading, program.json)
    images: list[tuple[str, Path]] = field(default_factory=list)  # further PNGs (a sweep's plots)
    notes: list[str] = field(default_factory=list)


# --- reading a run ------------------------------------------------------------------------------------------


def read_records(path: Path) -> list[dict]:
    """The records of an eval/*.jsonl file; a torn or foreign line is skipped, a missing file is no records."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("id") is not None:
            records.append(record)
    return records


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
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
            files = {"teacher": "teacher.test", "student (no adapter)": "student.test", "distilled student": "test"}
            return [Source(label, evals / f"{name}.jsonl", columns.get(label) or {}, main=label == "distilled student")
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
        heading = {"distill": "The distilled student's program (zero-shot)", "sweep": "The best trial's program",
                   "eval": "The evaluated program"}.get(command, "The compiled program")
        report.program_files.append((heading, found))
    if command == "distill":
        teacher = str(summary.get("teacher") or "")
        if teacher.startswith("run ") and (Path(teacher[4:]) / "program.json").is_file():
            report.program_files.append(("The teacher's program", Path(teacher[4:]) / "program.json"))
    if command == "sweep":
        report.images += [(name, run_dir / name) for name in summary.get("plots") or [] if (run_dir / name).is_file()]
    return report


# --- what the charts show -----------------------------------------------------------------------------------


def _local_language(text: str) -> str:
    """'ja' when kana or kanji make up a fair share of the letters (an English notice quoting one Japanese name
    stays English), else 'en'."""
    cjk = len(_KANA_OR_IDEOGRAPH.findall(text))
    latin = len(_LATIN.findall(text))
    return "ja" if cjk and cjk / (cjk + latin) >= 0.15 else "en"


def _detector() -> Callable[[str], str]:
    try:
        from smelt.eval.language import detect_language  # a shared detector, where the project has one
    except Exception:  # noqa: BLE001 - not there (yet): the local rule
        return _local_language

    def detect(text: str) -> str:
        try:
            found = detect_language(text)
        except Exception:  # noqa: BLE001
            return _local_language(text)
        return found if isinstance(found, str) and found else _local_language(text)

    return detect


def record_language(record: dict, detect: Callable[[str], str] | None = None) -> str:
    """The record's ``language``, else detected from its inputs."""
    language = record.get("language")
    if isinstance(language, str) and language:
        return language
    inputs = record.get("inputs")
    values = inputs.values() if isinstance(inputs, dict) else [inputs]
    text = "\n".join(str(v) for v in values if v is not None)  # as smelt.eval.language.inputs_language reads them
    return (detect or _local_language)(text)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def language_scores(programs: list[Program]) -> tuple[list[str], list[list[float | None]], list[list[int]]]:
    """Languages (Japanese and English first), and each program's mean score and example count per language:
    from its records, else from its summary's ``by_language``."""
    detect = _detector()
    per_program = []
    for program in programs:
        scores: dict[str, list[float]] = {}
        for record in program.records:
            value = _number(record.get("score"))
            if value is not None:
                scores.setdefault(record_language(record, detect), []).append(value)
        if not scores and isinstance(program.summary.get("by_language"), dict):
            for language, entry in program.summary["by_language"].items():
                value = _number(entry.get("score") if isinstance(entry, dict) else entry)
                n = int(entry.get("examples") or 0) if isinstance(entry, dict) else 0
                if value is not None:
                    scores[str(language)] = [value] * max(1, n)  # the mean, counted n times
        per_program.append(scores)
    found = dict.fromkeys(language for scores in per_program for language in scores)
    languages = [code for code in LANGUAGE_NAMES if code in found] + sorted(c for c in found if c not in LANGUAGE_NAMES)
    values = [[_mean(scores.get(code, [])) for code in languages] for scores in per_program]
    counts = [[len(scores.get(code, [])) for code in languages] for scores in per_program]
    return languages, values, counts


def _exact_match() -> Callable[[str, str], float] | None:
    try:
        from smelt.eval.metrics import exact_match
    except Exception:  # noqa: BLE001 - the metrics module being changed must not cost the whole report
        return None
    return exact_match


def _record_fact(record: dict) -> float | None:
    for value in (record.get("fact"), record.get("fact_score"), (record.get("scores") or {}).get("fact"),
                  (record.get("scores") or {}).get("fact_score")):
        if _number(value) is not None:
            return float(value)
    return None


def _fact_mean(records: list[dict]) -> float | None:
    """The records' own fact scores where every record has one, else ``fact`` computed from gold and prediction."""
    from smelt.eval.metrics import fact

    values = [_record_fact(r) for r in records]
    if records and all(v is not None for v in values):
        return _mean(values)
    return _mean([fact(str(r.get("prediction") or ""), r["gold"]) for r in records if isinstance(r.get("gold"), str)])


def _measured(records: list[dict], key: str) -> float | None:
    """The mean of ``key`` over records that called the model (a cached answer took no time and no tokens)."""
    return _mean([v for r in records if (v := _number(r.get(key))) and (r.get("prompt_tokens") or not r.get("cached"))])


def _latency(program: Program) -> float | None:
    """One-request latency where measured, else the per-example latency of the scoring pass."""
    for value in (program.summary.get("single_request_latency_s"), program.summary.get("latency_s_per_example"),
                  _measured(program.records, "latency_s")):
        if _number(value) and value > 0:
            return float(value)
    return None


def _prompt_tokens(program: Program) -> float | None:
    for value in (program.summary.get("prompt_tokens_per_example"), _measured(program.records, "prompt_tokens")):
        if _number(value) and value > 0:
            return float(value)
    return None


@dataclass
class Radar:
    axes: list[str]
    values: list[list[float]]  # per program, per axis, 0..1
    raw: list[list[str]]  # per program, per axis: the number before scaling, for the table under the chart
    scaling: list[str]  # one line per axis
    left_out: list[str]  # axes without data, and why


def radar_values(programs: list[Program], metric: str = "score") -> Radar:
    """Each program over score, exact match, fact, grounding, speed and prompt tokens, scaled to 0..1 with bigger
    better; an axis some program has no value for is left out, with the reason."""
    candidates: list[tuple[str, list[float | None], str, Callable[[float], str]]] = []
    left_out = []

    scores = [_mean([v for r in p.records if (v := _number(r.get("score"))) is not None]) for p in programs]
    scores = [s if s is not None else _number(p.summary.get("score")) for s, p in zip(scores, programs, strict=True)]
    top = max([s for s in scores if s is not None] + [1.0])
    candidates.append(("score", [None if s is None else s / top for s in scores],
                       f"score: the mean {metric}" + (" (0–1)" if top == 1.0 else f", divided by the best ({top:.3g})"),
                       lambda v: f"{v:.3f}"))

    exact_match = _exact_match()
    ems = []
    for p in programs:
        pairs = [(r.get("prediction"), r.get("gold")) for r in p.records if isinstance(r.get("gold"), str)]
        ems.append(_mean([exact_match(str(pred or ""), gold) for pred, gold in pairs])
                   if exact_match and pairs else None)
    candidates.append(("exact match", ems, "exact match: share of answers equal to the reference after normalisation "
                       "(smelt.eval.metrics.exact_match)", lambda v: f"{v:.3f}"))

    facts = [_fact_mean(p.records) for p in programs]
    candidates.append(("fact", facts, "fact: the mean fact score of the answers (0–1)", lambda v: f"{v:.3f}"))

    grounding = []
    for p in programs:
        marked = [r for r in p.records if "invented" in r]
        grounding.append(1 - sum(bool(r.get("invented")) for r in marked) / len(marked) if marked else None)
    candidates.append(("grounding", grounding, "grounding: 1 − the share of answers with invented content "
                       "(a non-empty \"invented\" list)", lambda v: f"{v:.3f}"))

    latencies = [_latency(p) for p in programs]
    fastest = min([v for v in latencies if v is not None], default=None)
    candidates.append(("speed", [fastest / v if v and fastest else None for v in latencies],
                       "speed: 1 / latency, divided by the fastest program's (the fastest is 1); one-request latency "
                       "where measured, else the mean per-example latency", lambda v: f"{v:.2f} s"))
    tokens = [_prompt_tokens(p) for p in programs]
    fewest = min([v for v in tokens if v is not None], default=None)
    candidates.append(("prompt tokens", [fewest / v if v and fewest else None for v in tokens],
                       "prompt tokens: the fewest prompt tokens per example divided by this program's (the leanest "
                       "prompt is 1)", lambda v: f"{v:.0f}"))

    raw_values = {"score": scores, "exact match": ems, "fact": facts, "grounding": grounding, "speed": latencies,
                  "prompt tokens": tokens}
    reasons = {"exact match": "no reference answers in the records", "fact": "no fact metric (smelt.eval.facts) or "
               "fact scores in the records", "grounding": 'no "invented" field in the records',
               "speed": "no latency recorded", "prompt tokens": "no prompt tokens recorded",
               "score": "no scores"}
    kept = [c for c in candidates if programs and all(v is not None for v in c[1])]
    for name, *_ in candidates:
        if name not in [c[0] for c in kept]:
            left_out.append(f"{name}: {reasons[name]}")
    raw = [[c[3](raw_values[c[0]][i]) if raw_values[c[0]][i] is not None else "-" for c in kept]
           for i in range(len(programs))]
    return Radar([c[0] for c in kept], [[c[1][i] for c in kept] for i in range(len(programs))], raw,
                 [c[2] for c in kept], left_out)


def pick_examples(programs: list[Program], limit: int = EXAMPLES) -> list[dict]:
    """Up to ``limit`` examples, Japanese and English in turn, the largest drop from the first program to the last
    first (one program: its lowest scores first). Each: id, language, inputs, gold, records (one per program)."""
    if not programs:
        return []
    detect = _detector()
    by_id = [{str(r["id"]): r for r in p.records} for p in programs]
    ids = list(dict.fromkeys(i for table in by_id for i in table))

    def score(table: dict, i: str) -> float:
        return _number((table.get(i) or {}).get("score")) or 0.0

    def key(i: str) -> tuple:
        change = score(by_id[-1], i) - score(by_id[0], i) if len(programs) > 1 else score(by_id[0], i)
        return change, score(by_id[-1], i), i

    rows = []
    for i in ids:
        first = next(table[i] for table in by_id if i in table)
        rows.append({"id": i, "language": record_language(first, detect), "inputs": first.get("inputs"),
                     "gold": first.get("gold"), "records": [table.get(i) for table in by_id], "key": key(i)})
    by_language: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["key"]):
        by_language.setdefault(row["language"], []).append(row)
    picked, queues = [], list(by_language.values())
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return sorted(picked, key=lambda r: r["key"])


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


# --- HTML ---------------------------------------------------------------------------------------------------


def shorten(text, limit: int) -> str:
    text = "" if text is None else str(text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _e(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK JP","Hiragino Sans","Yu Gothic",
Meiryo,sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#1d1d1f;line-height:1.45;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}.sub{color:#666;margin:0 0 12px;word-break:break-all}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f4f4f6;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.ex{table-layout:fixed;width:100%}table.ex td{word-wrap:break-word;overflow-wrap:anywhere;font-size:13px}
.field{color:#666;font-size:12px}.sc{display:inline-block;min-width:38px;padding:0 4px;border-radius:3px;
font-size:12px;font-variant-numeric:tabular-nums}.good{background:#d8f0d8}.mid{background:#f6eccd}.bad{background:#f6d6d6}
.note{color:#555;font-size:13px}img{max-width:100%;height:auto}pre{white-space:pre-wrap;background:#f7f7f9;
padding:8px;border:1px solid #e4e4e8;font-size:12.5px;overflow-wrap:anywhere}
.err{color:#a00;font-size:12px}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}.row>section{flex:1 1 520px;min-width:0}
.scroll{overflow-x:auto;max-width:100%}
"""


def _score_class(value: float | None) -> str:
    if value is None:
        return "mid"
    return "good" if value >= 0.67 else "bad" if value < 0.34 else "mid"


def _comparison_html(columns: dict[str, dict]) -> str:
    if not columns:
        return "<p class='note'>No scored program in this run.</p>"
    try:
        from smelt.eval.reports.tables import comparison_rows

        rows = comparison_rows(columns)
    except Exception:  # noqa: BLE001 - the markdown table's module being changed: the headline rows only
        rows = [["", *columns], ["score", *(f"{c.get('score', '-')}" for c in columns.values())]]
    header, *body = rows
    out = ["<div class='scroll'><table class='cmp'><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for row in body:
        out.append(f"<tr><th>{_e(row[0])}</th>" + "".join(f"<td class='n'>{_e(c)}</td>" for c in row[1:]) + "</tr>")
    return "\n".join(out) + "</table></div>"


def _image(png: bytes, alt: str) -> str:
    return f"<img src='{plots.data_uri(png)}' alt='{_e(alt)}'>"


def _languages_html(report: Report) -> str:
    programs = [p for p in report.programs if p.records or p.summary.get("by_language")]
    if not programs:
        return "<p class='note'>No per-example records to split by language.</p>"
    languages, values, counts = language_scores(programs)
    if not languages:
        return "<p class='note'>No scored records.</p>"
    names = [LANGUAGE_NAMES.get(code, code) for code in languages]
    png = plots.language_bars([p.label for p in programs], names, values, counts, ylabel=report.metric)
    rows = ["<div class='scroll'><table><tr><th></th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"]
    for p, program in enumerate(programs):
        cells = "".join(f"<td class='n'>{'-' if v is None else f'{v:.3f}'} (n={n})</td>"
                        for v, n in zip(values[p], counts[p], strict=True))
        rows.append(f"<tr><th>{_e(program.label)}</th>{cells}</tr>")
    return (_image(png, f"{report.metric} by language") + "\n" + "\n".join(rows) + "</table></div>"
            + f"<p class='note'>Mean {_e(report.metric)} on {_e(report.split)} per language of the inputs "
              "(a record's <code>language</code>, else detected from its inputs: Japanese when kana or kanji make up "
              "a fair share of the letters).</p>")


def _radar_html(report: Report) -> str:
    programs = [p for p in report.programs if p.records or p.summary]
    if not programs:
        return "<p class='note'>No program to compare.</p>"
    radar = radar_values(programs, report.metric)
    out = []
    if len(radar.axes) >= 3:
        out.append(_image(plots.radar([p.label for p in programs], radar.axes, radar.values), "radar"))
    else:
        out.append(f"<p class='note'>Only {len(radar.axes)} axes have data; a radar needs three.</p>")
    if radar.axes:
        out.append("<div class='scroll'><table><tr><th></th>" + "".join(f"<th>{_e(p.label)}</th>" for p in programs)
                   + "</tr>")
        for a, axis in enumerate(radar.axes):  # one row per axis: narrower than one per program
            cells = "".join(f"<td class='n'>{_e(radar.raw[p][a])} <span class='field'>({radar.values[p][a]:.2f})"
                            "</span></td>" for p in range(len(programs)))
            out.append(f"<tr><th>{_e(axis)}</th>{cells}</tr>")
        out.append("</table></div>")
    caption = "".join(f"<li>{_e(line)}</li>" for line in radar.scaling)
    left_out = "".join(f"<li>{_e(line)}</li>" for line in radar.left_out)
    out.append(f"<p class='note'>Each axis is scaled to 0–1, bigger is better (in brackets above; before them the "
               f"measured value):</p><ul class='note'>{caption}</ul>")
    if left_out:
        out.append(f"<p class='note'>Left out:</p><ul class='note'>{left_out}</ul>")
    return "\n".join(out)


def _inputs_html(inputs) -> str:
    if not isinstance(inputs, dict):
        return _e(shorten(inputs, 300))
    parts = []
    for name, value in inputs.items():
        text = str(value or "")
        limit = 300 if len(text) <= 300 else 160  # short inputs (the question) whole, long ones (documents) cut
        parts.append(f"<div><span class='field'>{_e(name)}:</span> {_e(shorten(text, limit))}</div>")
    return "".join(parts)


def _examples_html(report: Report) -> str:
    programs = [p for p in report.programs if p.records]
    rows = pick_examples(programs)
    if not rows:
        return "<p class='note'>No per-example records.</p>"
    question = 30 if len(programs) > 1 else 40
    width = round((100 - 4 - question) / (len(programs) + 1), 1)  # the gold and each program's answer
    head = (f"<table class='ex'><colgroup><col style='width:4%'><col style='width:{question}%'>"
            + "".join(f"<col style='width:{width}%'>" for _ in range(len(programs) + 1)) + "</colgroup>"
            "<tr><th>#</th><th>question</th><th>gold</th>"
            + "".join(f"<th>{_e(p.label)}</th>" for p in programs) + "</tr>")
    out = [head]
    for n, row in enumerate(rows, 1):
        cells = []
        for record in row["records"]:
            if record is None:
                cells.append("<td class='note'>(not scored)</td>")
                continue
            value = _number(record.get("score"))
            badge = f"<span class='sc {_score_class(value)}'>{'-' if value is None else f'{value:.2f}'}</span>"
            problem = ""
            if record.get("parse_error"):
                problem = "<div class='err'>unparseable answer</div>"
            elif record.get("error"):
                problem = f"<div class='err'>{_e(shorten(record['error'], 120))}</div>"
            prediction = record.get("prediction")
            text = "—" if prediction in (None, "") else _e(shorten(prediction, 300))
            cells.append(f"<td>{badge} {text}{problem}</td>")
        language = LANGUAGE_NAMES.get(row["language"], row["language"])
        out.append(f"<tr><td class='n'>{n}</td><td><div class='field'>{_e(row['id'])} · {_e(language)}</div>"
                   f"{_inputs_html(row['inputs'])}</td><td>{_e(shorten(row['gold'], 300))}</td>{''.join(cells)}</tr>")
    order = ("the largest drop from the first program to the last first" if len(programs) > 1
             else "the lowest scores first")
    return ("\n".join(out) + "</table>"
            + f"<p class='note'>{len(rows)} examples of {_e(report.split)}, Japanese and English in turn, {order}. "
              "Each answer carries its score.</p>")


def _programs_html(report: Report) -> str:
    out = []
    for heading, path in report.program_files:
        parts = program_parts(path)
        out.append(f"<h3>{_e(heading)}</h3><p class='sub'>{_e(path)}</p>")
        if not parts:
            out.append("<p class='note'>No predictor found in this file.</p>")
        for part in parts:
            out.append(f"<p><b>{_e(part['name'])}</b>: {len(part['demos'])} demo(s)</p>")
            out.append(f"<pre>{_e(shorten(part['instructions'], 1500) or '(no instructions)')}</pre>")
            for d, demo in enumerate(part["demos"][:6], 1):
                fields = "".join(f"<div><span class='field'>{_e(k)}:</span> {_e(shorten(v, 240))}</div>"
                                 for k, v in demo.items() if k != "augmented")
                out.append(f"<div class='note'>demo {d}{' (bootstrapped)' if demo.get('augmented') else ''}</div>"
                           f"<pre>{fields}</pre>")
            if len(part["demos"]) > 6:
                out.append(f"<p class='note'>… and {len(part['demos']) - 6} more demos.</p>")
    return "\n".join(out) or "<p class='note'>No program.json.</p>"


def render_html(report: Report) -> str:
    charts = (f"<div class='row'><section><h2>Score by language ({_e(report.split)})</h2>\n{_languages_html(report)}"
              f"</section>\n<section><h2>Score, exact match, fact, grounding, speed, prompt tokens ({_e(report.split)})"
              f"</h2>\n{_radar_html(report)}</section></div>")
    sections = [("Comparison", _comparison_html(report.columns)), ("", charts),
                ("Example answers", _examples_html(report))]
    if report.program_files:
        sections.append(("Instructions and demos", _programs_html(report)))
    if report.images:
        sections.append(("Plots", "\n".join(_image(path.read_bytes(), name) for name, path in report.images)))
    body = "\n".join(f"<section><h2>{_e(title)}</h2>\n{content}</section>" if title else content
                     for title, content in sections)
    notes = "".join(f"<p class='note'>{_e(n)}</p>" for n in report.notes)
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"{GENERATOR_TAG}\n<title>{_e(report.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{_e(report.title)}</h1>\n<p class='sub'>{_e(report.subtitle)} · metric {_e(report.metric)}</p>\n"
            f"{notes}\n{body}\n</body>\n</html>\n")


def write_html_report(run_dir: Path, log: Callable[[str], None] | None = None) -> Path | None:
    """Write ``run_dir/report.html``; a failure is one logged line, never the end of the command that ran."""
    run_dir = Path(run_dir)
    try:
        from smelt.files import write_text

        path = run_dir / REPORT_FILE
        write_text(path, render_html(run_report(run_dir)))
        return path
    except Exception as exc:  # noqa: BLE001 - report.md and summary.json are written; the page is a convenience
        (log or (lambda m: print(m, file=sys.stderr)))(
            f"[smelt] no {REPORT_FILE}: {type(exc).__name__}: {str(exc)[:200]}")
        return None
