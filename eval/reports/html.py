"""report.html: the run's comparison as one self-contained page (inline CSS, charts as base64 PNG, no script,
no network), for a person and for a browser on a machine with no internet.

What it holds, for a compile, distill, eval or sweep run (and for several runs: ``commands.report``):

- the comparison table of report.md (``smelt.eval.reports.tables.comparison_rows``);
- the score per language (Japanese, English) of each program, baseline -> compiled -> distilled;
- a radar of each program over score, exact match, fact, grounding, speed and prompt tokens (the axes the records
  support), each scaled so that bigger is better;
- ten example answers side by side, the worst regressions (first program -> last) first, both languages;
- the compiled program's instructions and demos (from program.json).

This module renders a ``Report`` (``smelt.eval.reports.run_records``: what a run holds) with the numbers of
``smelt.eval.reports.chart_data`` (what the charts show) into HTML. A field a record lacks leaves its chart, axis
or cell out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

from smelt.eval.language import JAPANESE_SHARE, LANGUAGES
from smelt.eval.reports import plots
from smelt.eval.reports.chart_data import as_number, language_scores, pick_examples, radar_values
from smelt.eval.reports.run_records import Report, instructions_sent, program_parts, run_report
from smelt.eval.reports.tables import comparison_rows
from smelt.files import write_text
from smelt.log import to_stderr

REPORT_FILE = "report.html"
# In every page's head: `report --out` replaces an existing file only when it is a page smelt wrote.
GENERATOR_TAG = "<meta name='generator' content='smelt'>"


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
    header, *body = comparison_rows(columns)
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
    names = [LANGUAGES.get(code, code) for code in languages]
    png = plots.language_bars([p.label for p in programs], names, values, counts, ylabel=report.metric)
    rows = ["<div class='scroll'><table><tr><th></th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"]
    for p, program in enumerate(programs):
        cells = "".join(f"<td class='n'>{'-' if v is None else f'{v:.3f}'} (n={n})</td>"
                        for v, n in zip(values[p], counts[p], strict=True))
        rows.append(f"<tr><th>{_e(program.label)}</th>{cells}</tr>")
    return (_image(png, f"{report.metric} by language") + "\n" + "\n".join(rows) + "</table></div>"
            + f"<p class='note'>Mean {_e(report.metric)} on {_e(report.split)} per language of the inputs "
              "(a record's <code>language</code>, else detected from its inputs: Japanese when kana and kanji make "
              f"up more than {JAPANESE_SHARE:.0%} of the letters).</p>")


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


def _inputs_heading(rows: list[dict]) -> str:
    """The inputs column's heading: the task's one input field (notice, inquiry), else "inputs"."""
    names = list(dict.fromkeys(name for row in rows if isinstance(row["inputs"], dict) for name in row["inputs"]))
    return names[0] if len(names) == 1 else "inputs"


def _examples_html(report: Report) -> str:
    programs = [p for p in report.programs if p.records]
    rows = pick_examples(programs)
    if not rows:
        return "<p class='note'>No per-example records.</p>"
    question = 30 if len(programs) > 1 else 40
    width = round((100 - 4 - question) / (len(programs) + 1), 1)  # the gold and each program's answer
    head = (f"<table class='ex'><colgroup><col style='width:4%'><col style='width:{question}%'>"
            + "".join(f"<col style='width:{width}%'>" for _ in range(len(programs) + 1)) + "</colgroup>"
            f"<tr><th>#</th><th>{_e(_inputs_heading(rows))}</th><th>gold</th>"
            + "".join(f"<th>{_e(p.label)}</th>" for p in programs) + "</tr>")
    out = [head]
    for n, row in enumerate(rows, 1):
        cells = []
        for record in row["records"]:
            if record is None:
                cells.append("<td class='note'>(not scored)</td>")
                continue
            value = as_number(record.get("score"))
            badge = f"<span class='sc {_score_class(value)}'>{'-' if value is None else f'{value:.2f}'}</span>"
            problem = ""
            if record.get("parse_error"):
                problem = "<div class='err'>unparseable answer</div>"
            elif record.get("error"):
                problem = f"<div class='err'>{_e(shorten(record['error'], 120))}</div>"
            prediction = record.get("prediction")
            text = "—" if prediction in (None, "") else _e(shorten(prediction, 300))
            cells.append(f"<td>{badge} {text}{problem}</td>")
        language = LANGUAGES.get(row["language"], row["language"])
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
        sent = instructions_sent(path.parent)
        out.append(f"<h3>{_e(heading)}</h3><p class='sub'>{_e(path)}</p>")
        if not sent:
            out.append("<p class='note'>Its prompt carries no instructions: the student learned the task in its LoRA "
                       "adapter, and its lean prompt leaves DSPy's system message (field list and the task's "
                       "instructions) out (distill --student-instructions keeps it).</p>")
        if not parts:
            out.append("<p class='note'>No predictor found in this file.</p>")
        for part in parts:
            out.append(f"<p><b>{_e(part['name'])}</b>: {len(part['demos'])} demo(s)</p>")
            if sent:
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
        path = run_dir / REPORT_FILE
        write_text(path, render_html(run_report(run_dir)))
        return path
    except Exception as exc:  # noqa: BLE001 - report.md and summary.json are written; the page is a convenience
        (log or to_stderr)(
            f"[smelt] no {REPORT_FILE}: {type(exc).__name__}: {str(exc)[:200]}")
        return None
