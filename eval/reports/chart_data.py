"""What report.html's charts and example table show, computed from a report's programs: the mean score per
language, the radar's axes (score, exact match, fact, grounding, speed, prompt tokens; each scaled to 0..1, bigger
better), and the example answers picked to show side by side. Grounding counts an empty answer and one mostly copied
from the input (smelt.eval.copied_answers) as ungrounded: a program that repeats its input invents nothing, yet it
is no grounded answer.

A record's language is its own ``language`` field, else that of its inputs by the one rule of
``smelt.eval.language``. A value the records or summaries lack leaves its axis out, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from smelt.eval.copied_answers import COPIED_SHARE, LONGER_THAN_REFERENCE, repeats_input
from smelt.eval.language import LANGUAGES, inputs_language
from smelt.eval.metrics import exact_match, fact
from smelt.eval.reports.run_records import Program
from smelt.programs.text import is_blank

EXAMPLES = 10  # example answers shown side by side


def record_language(record: dict) -> str:
    """The record's ``language``, else its inputs' (``smelt.eval.language.inputs_language``)."""
    language = record.get("language")
    if isinstance(language, str) and language:
        return language
    inputs = record.get("inputs")
    return inputs_language(inputs.values() if isinstance(inputs, dict) else [inputs])


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def as_number(value) -> float | None:
    """A JSON number as a float; None for anything else (a bool too)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def language_scores(programs: list[Program]) -> tuple[list[str], list[list[float | None]], list[list[int]]]:
    """Languages (Japanese and English first), and each program's mean score and example count per language:
    from its records, else from its summary's ``by_language``."""
    per_program = []
    for program in programs:
        scores: dict[str, list[float]] = {}
        for record in program.records:
            value = as_number(record.get("score"))
            if value is not None:
                scores.setdefault(record_language(record), []).append(value)
        if not scores and isinstance(program.summary.get("by_language"), dict):
            for language, entry in program.summary["by_language"].items():
                value = as_number(entry.get("score") if isinstance(entry, dict) else entry)
                n = int(entry.get("examples") or 0) if isinstance(entry, dict) else 0
                if value is not None:
                    scores[str(language)] = [value] * max(1, n)  # the mean, counted n times
        per_program.append(scores)
    found = dict.fromkeys(language for scores in per_program for language in scores)
    languages = [code for code in LANGUAGES if code in found] + sorted(c for c in found if c not in LANGUAGES)
    values = [[_mean(scores.get(code, [])) for code in languages] for scores in per_program]
    counts = [[len(scores.get(code, [])) for code in languages] for scores in per_program]
    return languages, values, counts


def _record_fact(record: dict) -> float | None:
    for value in (record.get("fact"), record.get("fact_score"), (record.get("scores") or {}).get("fact"),
                  (record.get("scores") or {}).get("fact_score")):
        if as_number(value) is not None:
            return float(value)
    return None


def _fact_mean(records: list[dict]) -> float | None:
    """The records' own fact scores where every record has one, else ``fact`` computed from gold and prediction."""
    values = [_record_fact(r) for r in records]
    if records and all(v is not None for v in values):
        return _mean(values)
    return _mean([0.0 if r.get("malformed") else fact(str(r.get("prediction") or ""), r["gold"])
                  for r in records if isinstance(r.get("gold"), str)])


def grounded_share(records: list[dict]) -> float | None:
    """The share of records whose answer is grounded evidence: not blank, no invented fact, not a copy of the
    inputs (smelt.eval.copied_answers); None when no record was checked for invented facts."""
    checked = [r for r in records if isinstance(r.get("invented"), list)]
    if not checked:
        return None
    grounded = [r for r in checked if not r["invented"] and not is_blank(str(r.get("prediction") or ""))
                and not repeats_input(r.get("prediction"), r.get("inputs") or {}, r.get("gold"))]
    return len(grounded) / len(checked)


def _measured(records: list[dict], key: str) -> float | None:
    """The mean of ``key`` over records that called the model (a cached answer took no time and no tokens)."""
    return _mean([v for r in records
                  if (v := as_number(r.get(key))) and (r.get("prompt_tokens") or not r.get("cached"))])


def _latency(program: Program) -> float | None:
    """One-request latency where measured, else the per-example latency of the scoring pass."""
    for value in (program.summary.get("single_request_latency_s"), program.summary.get("latency_s_per_example"),
                  _measured(program.records, "latency_s")):
        if as_number(value) and value > 0:
            return float(value)
    return None


def _prompt_tokens(program: Program) -> float | None:
    for value in (program.summary.get("prompt_tokens_per_example"), _measured(program.records, "prompt_tokens")):
        if as_number(value) and value > 0:
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

    scores = [_mean([v for r in p.records if (v := as_number(r.get("score"))) is not None]) for p in programs]
    scores = [s if s is not None else as_number(p.summary.get("score")) for s, p in zip(scores, programs, strict=True)]
    top = max([s for s in scores if s is not None] + [1.0])
    candidates.append(("score", [None if s is None else s / top for s in scores],
                       f"score: the mean {metric}" + (" (0–1)" if top == 1.0 else f", divided by the best ({top:.3g})"),
                       lambda v: f"{v:.3f}"))

    ems = []
    for p in programs:
        pairs = [(r.get("prediction"), r.get("gold"), r.get("malformed")) for r in p.records
                 if isinstance(r.get("gold"), str)]
        ems.append(_mean([0.0 if bad else exact_match(str(pred or ""), gold) for pred, gold, bad in pairs])
                   if pairs else None)
    candidates.append(("exact match", ems, "exact match: share of answers equal to the reference after normalisation "
                       "(smelt.eval.metrics.exact_match); a malformed answer scores 0", lambda v: f"{v:.3f}"))

    facts = [_fact_mean(p.records) for p in programs]
    candidates.append(("fact", facts, "fact: the mean fact score of the answers (0–1; a malformed answer scores 0)",
                       lambda v: f"{v:.3f}"))

    grounding = [grounded_share(p.records) for p in programs]
    candidates.append(("grounding", grounding, "grounding: the share of answers that state no fact their source "
                       "lacks (an empty \"invented\" list) and are an answer of their own: an empty answer, or one "
                       f"mostly copied from the input (≥ {COPIED_SHARE:.0%} of it verbatim from an input, at least "
                       f"{LONGER_THAN_REFERENCE:g}× the reference's length), is no evidence of grounding and counts "
                       "against it", lambda v: f"{v:.3f}"))

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
    reasons = {"exact match": "no reference answers in the records",
               "fact": "no reference answers or fact scores in the records",
               "grounding": 'no "invented" field in the records', "speed": "no latency recorded",
               "prompt tokens": "no prompt tokens recorded", "score": "no scores"}
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
    by_id = [{str(r["id"]): r for r in p.records} for p in programs]
    ids = list(dict.fromkeys(i for table in by_id for i in table))

    def score(table: dict, i: str) -> float:
        return as_number((table.get(i) or {}).get("score")) or 0.0

    def key(i: str) -> tuple:
        change = score(by_id[-1], i) - score(by_id[0], i) if len(programs) > 1 else score(by_id[0], i)
        return change, score(by_id[-1], i), i

    rows = []
    for i in ids:
        first = next(table[i] for table in by_id if i in table)
        rows.append({"id": i, "language": record_language(first), "inputs": first.get("inputs"),
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
