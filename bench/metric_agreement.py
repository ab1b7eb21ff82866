"""How well each answer metric agrees with human ratings, on data/metric_agreement/rated.jsonl.

The file holds 80 answers to questions about short municipal notices (half English, half Japanese), each rated
0-10 by hand (rubric in data/metric_agreement/README.md), in eight categories: correct, verbose_correct,
partly_correct, wrong_number_or_date, wrong_language, invented_url, not_in_document_right, not_in_document_wrong.
Every answer is scored with f1 and em (smelt.eval.metrics), fact (smelt.eval.facts, when present) and the LLM
judge on each --judge model (smelt.eval.judge.JudgeMetric on the doc_qa task: it sees the document, the question,
the reference and the answer; calls from a pool of --threads threads, so the in-process engine batches them; DSPy's
cache off). Reported per metric, overall and per language:

- Spearman: rank correlation of the metric with the human ratings (average ranks for ties);
- within 2: the share of answers where metric x 10 is within 2 points of the human rating;
- per category, the mean score x 10 next to the human mean: which kind of wrong answer fools which metric.

A judge reply that does not parse counts as rating 0 and is counted (parse failures); so is a call that raises.

    python -m bench.metric_agreement [--judge SPEC ...] [--limit N] [--device auto] [--threads 8] [--out FILE]
"""

import argparse
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.machine import cpu_name, device_name
from smelt.eval.metrics import exact_match, f1

DATA = Path(__file__).resolve().parents[1] / "data" / "metric_agreement" / "rated.jsonl"
CATEGORIES = ("correct", "verbose_correct", "partly_correct", "wrong_number_or_date", "wrong_language",
              "invented_url", "not_in_document_right", "not_in_document_wrong")
LANGUAGES = ("en", "ja")
TOLERANCE = 2  # "within 2 points": |metric x 10 - rating| <= TOLERANCE
DEFAULT_JUDGE = "gemma-3-270m"


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average ranks; NaN when either side is constant or too short."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} values against {len(y)}")
    if len(x) < 2:
        return math.nan
    rx, ry = np.array(average_ranks(x)), np.array(average_ranks(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator else math.nan


def within(scores: Sequence[float], ratings: Sequence[float], tolerance: float = TOLERANCE) -> float:
    """Share of answers whose score (0..1) x 10 is within ``tolerance`` points of the 0-10 rating."""
    if len(scores) != len(ratings):
        raise ValueError(f"within: {len(scores)} scores against {len(ratings)} ratings")
    if not scores:
        return math.nan
    # A small epsilon: a score of 0.30000000000000004 (an F1 can land there) is 3 points, within 2 of 1.
    hits = sum(abs(score * 10 - rating) <= tolerance + 1e-9 for score, rating in zip(scores, ratings, strict=True))
    return hits / len(scores)


def load_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def pick(rows: list[dict], limit: int | None) -> list[dict]:
    """The first ``limit`` rows taking one from each (language, category) group in turn, so a small run still
    covers both languages and every category; all rows, in file order, without a limit."""
    if not limit or limit >= len(rows):
        return rows
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["category"], row["language"])].append(row)
    # category by category, English then Japanese: --limit 8 is the first answer of four categories in both languages
    order = {category: i for i, category in enumerate(CATEGORIES)}
    groups = dict(sorted(groups.items(), key=lambda item: (order.get(item[0][0], len(order)), item[0])))
    picked: list[dict] = []
    depth = 0
    while len(picked) < limit:
        for group in groups.values():
            if depth < len(group) and len(picked) < limit:
                picked.append(group[depth])
        depth += 1
    return picked


def fact_metric() -> tuple[Callable[[str, str], float] | None, str]:
    """smelt.eval.metrics.fact, (prediction, reference) -> 0..1, or None and why the metric is skipped."""
    try:
        from smelt.eval.metrics import fact as fact_score
    except ImportError as exc:
        return None, f"fact: skipped, smelt.eval.metrics.fact cannot be imported ({exc})"
    return fact_score, "fact: smelt.eval.metrics.fact"


def judge_scores(rows: list[dict], spec: str, device: str, threads: int) -> dict:
    """Each row's judge score (0..1) from ``spec``, with parse failures, errors, seconds and where it ran."""
    import dspy

    from smelt.eval.judge import JudgeMetric
    from smelt.lm import lm_for_spec
    from smelt.programs.registry import get_task

    loaded_at = time.perf_counter()
    resolved = lm_for_spec(spec, option="--judge", device=device, cache=False)
    load_s = time.perf_counter() - loaded_at
    metric = JudgeMetric("judge", get_task("doc_qa"), judge=resolved)

    def rate(row: dict) -> tuple[float, str | None]:
        example = dspy.Example(document=row["document"], question=row["question"],
                               answer=row["reference"]).with_inputs("document", "question")
        try:
            value, detail = metric.score(example, dspy.Prediction(answer=row["answer"]))
        except Exception as exc:  # a failed call (server down, timeout...) counts as 0, like a parse failure
            return 0.0, f"error: {type(exc).__name__}: {str(exc)[:120]}"
        return float(value), ("parse" if detail.get("judge_error") else None)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(rate, rows))
    seconds = time.perf_counter() - started
    engine = resolved.engine
    where = (f"{engine.device} ({device_name(engine.device)}, {engine.dtype})" if engine is not None
             else "API (remote)")
    errors = [problem for _, problem in results if problem and problem.startswith("error")]
    return {
        "scores": [value for value, _ in results],
        "parse_failures": sum(problem == "parse" for _, problem in results),
        "errors": errors,
        "seconds": seconds,
        "load_seconds": load_s,
        "where": where,
    }


def _format(value: float, width: int = 6) -> str:
    return f"{'n/a':>{width}}" if math.isnan(value) else f"{value:>{width}.2f}"


def agreement_table(rows: list[dict], scores: dict[str, list[float]], notes: dict[str, str]) -> list[str]:
    subsets = {"all": list(range(len(rows)))}
    subsets |= {lang: [i for i, row in enumerate(rows) if row["language"] == lang] for lang in LANGUAGES}
    name_width = max(len("metric"), *(len(name) for name in scores))
    header = (f"{'metric':<{name_width}}  {'Spearman':>8} {'en':>6} {'ja':>6}   "
              f"{'within 2':>8} {'en':>6} {'ja':>6}   notes")
    lines = [header, "-" * len(header)]
    for name, values in scores.items():
        spearmans = [spearman([values[i] for i in idx], [rows[i]["rating"] for i in idx]) for idx in subsets.values()]
        accuracies = [within([values[i] for i in idx], [rows[i]["rating"] for i in idx]) for idx in subsets.values()]
        lines.append(f"{name:<{name_width}}  {_format(spearmans[0], 8)} {_format(spearmans[1])} {_format(spearmans[2])}"
                     f"   {_format(accuracies[0], 8)} {_format(accuracies[1])} {_format(accuracies[2])}   "
                     f"{notes.get(name, '')}".rstrip())
    return lines


def category_table(rows: list[dict], scores: dict[str, list[float]]) -> list[str]:
    """Mean score x 10 per category (all, then en/ja), the human rating first."""
    columns = {"human": [row["rating"] / 10 for row in rows]} | scores
    width = max(15, *(len(name) for name in columns))

    def cell(values: list[float], indices: list[int]) -> str:
        chosen = [values[i] * 10 for i in indices]
        return f"{sum(chosen) / len(chosen):4.1f}" if chosen else " n/a"

    header = f"{'category':<22} {'n':>3}  " + "  ".join(f"{name:>{width}}" for name in columns)
    lines = [header, "-" * len(header)]
    for category in CATEGORIES:
        indices = [i for i, row in enumerate(rows) if row["category"] == category]
        if not indices:
            continue
        by_language = {lang: [i for i in indices if rows[i]["language"] == lang] for lang in LANGUAGES}
        cells = [f"{cell(values, indices)} ({cell(values, by_language['en'])}/{cell(values, by_language['ja'])})"
                 for values in columns.values()]
        lines.append(f"{category:<22} {len(indices):>3}  " + "  ".join(f"{c:>{width}}" for c in cells))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", nargs="*", default=None,
                        help=f"judge model specs (default: {DEFAULT_JUDGE}; --judge with no spec: no judge)")
    parser.add_argument("--limit", type=int, default=None,
                        help="rate only N answers, taken in turn from each language x category group")
    parser.add_argument("--device", default="auto", help="device of in-process judges: auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=8, help="judge calls in flight (the engine batches them)")
    parser.add_argument("--data", type=Path, default=DATA, help="the rated answers (JSONL)")
    parser.add_argument("--out", type=Path, default=None, help="write each answer's scores here (JSONL)")
    args = parser.parse_args(argv)
    judges = [DEFAULT_JUDGE] if args.judge is None else args.judge
    from smelt.lm.truncation import install_truncation_filter

    install_truncation_filter()  # a judge rambling to max_tokens: counted, not a warning per reply

    started = time.perf_counter()
    rows = pick(load_rows(args.data), args.limit)
    counts = {lang: sum(row["language"] == lang for row in rows) for lang in LANGUAGES}
    print(f"data: {args.data.name}, {len(rows)} rated answers ({counts['en']} en, {counts['ja']} ja)"
          + (f", --limit {args.limit}" if args.limit else ""))
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.2f}")

    scores: dict[str, list[float]] = {
        "f1": [f1(row["answer"], row["reference"]) for row in rows],
        "em": [exact_match(row["answer"], row["reference"]) for row in rows],
    }
    notes: dict[str, str] = {}
    fact, fact_note = fact_metric()
    if fact is not None:
        scores["fact"] = [float(fact(row["answer"], row["reference"])) for row in rows]
    print(fact_note)

    for spec in judges:
        result = judge_scores(rows, spec, args.device, args.threads)
        name = f"judge:{spec}"
        scores[name] = result["scores"]
        failures = result["parse_failures"] + len(result["errors"])
        notes[name] = f"parse failures {result['parse_failures']}/{len(rows)}" + (
            f", call errors {len(result['errors'])}" if result["errors"] else "")
        print(f"{name}: {result['where']}, load {result['load_seconds']:.1f} s, {len(rows)} ratings in "
              f"{result['seconds']:.1f} s ({args.threads} threads), {failures} scored 0 for lack of a rating")
        for error in result["errors"][:3]:
            print(f"  {error}")

    print()
    print(f"agreement with the human ratings (within 2: |metric x 10 - rating| <= {TOLERANCE})")
    for line in agreement_table(rows, scores, notes):
        print(line)
    print()
    print("mean score x 10 per category: all (en/ja)")
    for line in category_table(rows, scores):
        print(line)
    print()
    if args.out:
        with args.out.open("w", encoding="utf-8") as f:
            for i, row in enumerate(rows):
                record = {"id": row["id"], "category": row["category"], "rating": row["rating"]}
                f.write(json.dumps(record | {name: values[i] for name, values in scores.items()}) + "\n")
        print(f"per-answer scores: {args.out}")
    print(f"wall time: {time.perf_counter() - started:.1f} s, load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
