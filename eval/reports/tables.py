"""Side-by-side tables of evaluation summaries, for the terminal and for report.md.

Under the score: the score of each language present (``by_language``: "score, Japanese", "score, English"),
then the task's extra scores; then the share of answers with an invented fact (``invented_rate``) and, for a task
declaring answer formats, the answers without theirs (``malformed``, each scored 0).

A number not measured in this pass says so: tokens and latency copied from the run that computed a cached answer
(``usage_reused``, smelt.eval.recorded_usage) are marked "reused", and the LM calls of a pass that found answers in
DSPy's cache count those answers as "cached".
"""

from smelt.eval.language import LANGUAGES

_ROWS = [
    ("score", "score ({metric})", "{:.3f}"),
    ("invented_rate", "answers with invented facts", "{:.3f}"),
    ("malformed", "malformed answers", "{:d}"),
    ("parse_failures", "parse failures", "{:d}"),
    ("errors", "errors", "{:d}"),
    ("judge_errors", "judge failures", "{:d}"),
    ("truncated", "answers cut at max_tokens", "{:d}"),
    ("single_request_latency_s", "latency, one request at a time (s)", "{:.2f}"),
    ("latency_s_per_example", "latency / example, {threads} in flight (s)", "{:.2f}"),
    ("prompt_tokens_per_example", "prompt tokens / example", "{:.0f}"),
    ("completion_tokens_per_example", "completion tokens / example", "{:.1f}"),
    ("lm_calls", "LM calls", "{:d}"),
    ("model_memory_mb", "model memory (MB)", "{:.0f}"),
    ("peak_memory_mb", "peak memory (MB)", "{:.0f}"),
    ("wall_s", "wall time (s)", "{:.1f}"),
]
_ONLY_WHEN_NONZERO = {"judge_errors", "truncated"}  # rows most runs never need
_USAGE_ROWS = {"latency_s_per_example", "prompt_tokens_per_example", "completion_tokens_per_example"}


def _cell(summary: dict, key: str, fmt: str) -> str:
    value = summary.get(key)
    if value is None:
        return "-"
    if key == "score" and summary.get("examples"):
        return fmt.format(value) + f" (n={summary['examples']})"
    reused, cached = summary.get("usage_reused") or 0, summary.get("cached_examples") or 0
    if key in _USAGE_ROWS and reused:  # measured by an earlier run, not by this pass
        fresh = (summary.get("examples") or 0) - cached
        return fmt.format(value) + (" (reused)" if fresh <= 0 else f" ({reused} of {reused + fresh} reused)")
    if key == "lm_calls" and cached:
        return fmt.format(value) + f" ({cached} cached)"
    return fmt.format(value)


def comparison_rows(columns: dict[str, dict]) -> list[list[str]]:
    metric = next((s.get("metric") for s in columns.values() if s.get("metric")), "score")
    threads = next((s.get("threads") for s in columns.values() if s.get("threads")), "many")
    rows = [["", *columns]]
    for key, label, fmt in _ROWS:
        if all(summary.get(key) is None for summary in columns.values()):
            continue
        if key in _ONLY_WHEN_NONZERO and not any(summary.get(key) for summary in columns.values()):
            continue
        rows.append([label.format(metric=metric, threads=threads), *(_cell(s, key, fmt) for s in columns.values())])
        if key == "score":  # per language, then the task's extra scores (e.g. citation recall), under the metric
            rows += _language_rows(columns)
            for name in dict.fromkeys(n for s in columns.values() for n in s.get("scores") or {}):
                cells = [(s.get("scores") or {}).get(name) for s in columns.values()]
                rows.append([name.replace("_", " "), *("-" if v is None else f"{v:.3f}" for v in cells)])
    return rows


def _language_rows(columns: dict[str, dict]) -> list[list[str]]:
    """'score, Japanese' and 'score, English' rows, for the languages any column has."""
    rows = []
    for code, language in LANGUAGES.items():
        groups = [(s.get("by_language") or {}).get(code) for s in columns.values()]
        if any(groups):
            rows.append([f"score, {language}", *("-" if not g or g.get("score") is None
                                                   else f"{g['score']:.3f} (n={g['examples']})" for g in groups)])
    return rows


def text_table(columns: dict[str, dict]) -> str:
    rows = comparison_rows(columns)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(columns: dict[str, dict]) -> str:
    rows = comparison_rows(columns)
    header, *body = rows
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def failure_examples(records: list[dict], limit: int = 5) -> list[dict]:
    """The first few failed examples (parse failures and errors, a failed judge call among them), for the report."""
    return [r for r in records if r.get("parse_error") or r.get("error")][:limit]
