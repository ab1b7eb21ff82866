"""One output rated by one or more judge models (a jury), on the whole rubric or item by item (--criteria).

Each rating is a DSPy signature call (``signatures/judge.py``). A reply DSPy cannot parse may still hold a
rating the way Flow Benchmark Tools' judges write it, ``[[7]]``: that is read too, from the judge's first
reply (no second attempt in another format, which would hide it). Several ``--judge`` models form a jury:
the rating is their mean and the spread (highest - lowest) is kept, so a report can list the examples
where the judges disagree by ``DISAGREEMENT`` points or more. With ``--criteria FILE`` each judge rates
every rubric item 0-10 and its rating is their mean.
"""

import copy
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import dspy
from dspy.utils.exceptions import AdapterParseError

from smelt.errors import SmeltError
from smelt.signatures.judge import JudgeCriterion

DISAGREEMENT = 4
_BRACKETED = re.compile(r"\[\[\s*(\d{1,2})(?:\s*/\s*10)?\s*\]\]")


@dataclass
class Verdict:
    rating: int | None  # None: the judge's reply held no rating
    rationale: str
    reply: str | None = None  # the raw reply, when it did not parse
    criteria: dict[str, int | None] | None = None  # --criteria: each item's rating (``rating`` is their mean)


def rate_criteria(judge, criteria: dict[str, str], **inputs) -> Verdict:
    """One judge's ratings of each rubric item, and their mean (rounded) as its rating."""
    verdicts = {name: ask(judge, JudgeCriterion, criterion=f"{name}: {text}", **inputs)
                for name, text in criteria.items()}
    ratings = {name: v.rating for name, v in verdicts.items()}
    given = [r for r in ratings.values() if r is not None]
    rationale = "; ".join(f"{name}: {v.rationale}" for name, v in verdicts.items() if v.rationale)
    return Verdict(round(statistics.fmean(given)) if given else None, rationale, criteria=ratings)


def judge_specs(text: str | None) -> list[str]:
    """The model specs of --judge: one, or several comma-separated (a jury)."""
    return [spec.strip() for spec in (text or "").split(",") if spec.strip()]


def bracketed_rating(text: str) -> int | None:
    """The last ``[[n]]`` (or ``[[n/10]]``) rating in a reply, as Flow Benchmark Tools' judges write it."""
    found = _BRACKETED.findall(text or "")
    return min(10, int(found[-1])) if found else None


def ask(judge, signature, **inputs) -> Verdict:
    """One judge's verdict. A call that fails (rate limit, timeout, after DSPy's retries) raises; a reply that
    holds no rating is a Verdict with rating None."""
    with judge.context(), dspy.context(adapter=_without_fallback(dspy.settings.adapter)):
        try:
            verdict = dspy.Predict(signature)(**inputs)
        except AdapterParseError as exc:
            reply = str(exc.lm_response or "")
            rating = bracketed_rating(reply)
            return Verdict(rating, "rating read from [[n]]" if rating is not None else "no rating in the reply",
                           None if rating is not None else reply[:300])
    try:
        rating = min(10, max(0, int(verdict.rating)))
    except (TypeError, ValueError):
        rating = bracketed_rating(str(verdict.rating))
    return Verdict(rating, str(verdict.get("rationale") or ""), None if rating is not None else str(verdict.rating))


def _without_fallback(adapter):
    """The judge's adapter, without DSPy's retry in JSON after a parse failure (that second reply would replace
    the first, and with it a ``[[n]]`` rating)."""
    if getattr(adapter, "use_json_adapter_fallback", False):
        adapter = copy.copy(adapter)
        adapter.use_json_adapter_fallback = False
    return adapter


def jury_rating(verdicts: dict[str, Verdict]) -> tuple[float | None, dict]:
    """The jury's mean rating (None when no judge gave one) and what the records keep: each judge's rating and,
    for several judges, the spread."""
    ratings = {name: v.rating for name, v in verdicts.items()}
    given = [r for r in ratings.values() if r is not None]
    mean = round(statistics.fmean(given), 2) if given else None
    detail = {"rating": mean}
    if len(verdicts) > 1:
        detail |= {"ratings": ratings, "spread": max(given) - min(given) if given else None,
                   "rationales": {name: v.rationale for name, v in verdicts.items()}}
    else:
        detail["rationale"] = next(iter(verdicts.values())).rationale
    if any(v.criteria for v in verdicts.values()):
        by_judge = {name: v.criteria for name, v in verdicts.items()}
        detail["criteria"] = by_judge if len(verdicts) > 1 else next(iter(by_judge.values()))
    replies = [v.reply for v in verdicts.values() if v.reply]
    if replies:
        detail["reply"] = replies[0]
    return mean, detail


def disagreements(records: list[dict], limit: int = 10) -> list[dict]:
    """Records whose judges disagree by DISAGREEMENT points or more, the widest first."""
    split = [r for r in records if ((r.get("judge") or {}).get("spread") or 0) >= DISAGREEMENT]
    return sorted(split, key=lambda r: -r["judge"]["spread"])[:limit]


def disagreement_lines(records: list[dict], where: str = "") -> list[str]:
    """Markdown lines listing the examples where the jury disagrees (none: no lines); ``where`` names the column."""
    split = disagreements(records)
    if not split:
        return []
    lines = ["", f"## Judges disagree by {DISAGREEMENT} or more{': ' + where if where else ''} "
                 f"({len(split)} examples, the widest first)", ""]
    for r in split:
        ratings = ", ".join(f"{name} {rating}" for name, rating in r["judge"]["ratings"].items())
        lines.append(f"- `{r['id']}` ({ratings}): answer {str(r.get('prediction'))[:120]!r}, "
                     f"reference {str(r.get('gold'))[:120]!r}")
    return lines


def load_criteria(path: str) -> dict[str, str]:
    """--criteria FILE: rubric items as ``name: what it asks`` (YAML, TOML or JSON; a mapping)."""
    file = Path(path)
    if not file.is_file():
        raise SmeltError(f"--criteria {path}: no such file; write the rubric items as `name: what it asks` "
                         "(YAML, TOML or JSON)")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix == ".toml":
            import tomllib

            items = tomllib.loads(text)
        else:
            import yaml

            items = yaml.safe_load(text)  # JSON is YAML too
    except Exception as exc:  # noqa: BLE001 - each parser has its own error types
        raise SmeltError(f"--criteria {path}: not valid {'TOML' if file.suffix == '.toml' else 'YAML or JSON'} "
                         f"({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(items, dict) or not items or not all(isinstance(v, str) and v.strip() for v in items.values()):
        raise SmeltError(f"--criteria {path}: expected a mapping of rubric items, e.g. `accuracy: the facts match "
                         "the reference`, one per line")
    return {str(name): text.strip() for name, text in items.items()}
