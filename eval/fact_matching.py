"""Looking facts up: whether a text holds the facts of another, and from that the reference's facts an answer
misses (the `fact` metric) and the answer's facts its source lacks (grounding). ``smelt.eval.facts`` reads the
facts out of a text.

One fact is *found* among the facts of another text when that text holds the same value, where:
- a number is found in any fact carrying it: a bare number, an amount, a date's year, month or day, a time's
  hour, a phone number's digits;
- an amount is found in the same amount (3万円 in 30,000 yen, 1.2万円 in 12,000円, 千二百円 in 1,200円) or in its
  number carried by anything but an amount (30,000円 in "30,000" or in a table's "30,000"; not in $30,000);
- a date is found in a date with the same month and day (when it names them) and, where both name a year,
  the same year, whatever the notation (2026-06-30, 令和8年6月30日, June 30, 2026 and 30 June 2026 are one
  date; 令和7年度末 and "the end of March 2026" are 2026-03-31); a year the other date leaves out must appear
  elsewhere in that text (as a year or a number), except when scoring an answer: an answer may leave out the
  reference's year;
- a time is found in a time with a common reading (9:00 in 午前9時; 9:00 p.m. is not 9 a.m.);
- a URL is found in the same URL or a longer one under it (city.example.jp in city.example.jp/pool);
- an e-mail address and a phone number: the same.

The `fact` score of an answer against its reference (`smelt.eval.metrics.fact`): 0 when a fact of the reference
is not found among the answer's facts; else F1 (characters for Japanese, words otherwise) where each fact counts
as one token, equal to the reference's fact it matches whatever its notation: 令和8年6月30日 against gold
2026-06-30 scores 1, "30 June 2026, by post" against it 0.5. A reference without facts scores plain F1. So gold
令和8年8月31日 against the answer 令和8年6月1日 scores 0, where character F1 gives 0.8: F1 rewards the shared
characters of a wrong date, the fact score does not. The answer's extra facts cost nothing beyond what F1
charges; grounding (below) judges those.

Grounding (`invented`): the facts of an answer that are not found in its source text (the task's inputs,
or what a retrieval program retrieved), as written in the answer: a date, number, URL, e-mail, phone,
amount or time the model made up, and every date the calendar does not have (2026-06-31), wherever it
appears. It checks that each fact is stated in the source, not that it follows
from it: a sum of two fees the source lists separately is flagged too (11 of the 216 shipped reference
answers of doc_qa and rag_qa are such sums, all of them multi-step or multi-document questions).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from smelt.eval.facts import Fact, extract_facts, loose_numbers

# English number words are no facts of their own, but count as their number when a fact is looked up.
_NUMBER_WORDS = {word: n for n, words in enumerate([
    ("zero",), ("one", "first"), ("two", "second"), ("three", "third"), ("four", "fourth"), ("five", "fifth"),
    ("six", "sixth"), ("seven", "seventh"), ("eight", "eighth"), ("nine", "ninth"), ("ten", "tenth"),
    ("eleven", "eleventh"), ("twelve", "twelfth")]) for word in words}
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.I)


def _date_parts(value: str) -> tuple[int | None, int | None, int | None]:
    if value.startswith("--"):
        month, day = value[2:].split("-")
        return None, int(month), int(day)
    parts = [int(p) for p in value.split("-")]
    return parts[0], parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None


@dataclass
class FactSet:
    """The facts of one text, indexed for `find`."""

    facts: list[Fact]
    numbers: set[str] = field(default_factory=set)  # every number a fact (or a number word) carries
    plain_numbers: set[str] = field(default_factory=set)  # the same, amounts left out
    years: set[int] = field(default_factory=set)  # years of dates, and numbers that could be years

    @classmethod
    def of(cls, text: str | None) -> FactSet:
        result = cls(extract_facts(text))
        for fact in result.facts:
            numbers = _numbers_of(fact)
            result.numbers |= numbers
            if fact.kind != "amount":
                result.plain_numbers |= numbers
            if fact.kind == "date" and _date_parts(fact.value)[0] is not None:
                result.years.add(_date_parts(fact.value)[0])
        normalized = unicodedata.normalize("NFKC", text or "")
        words = {str(_NUMBER_WORDS[word.lower()]) for word in _NUMBER_WORD_RE.findall(normalized)}
        # Digits no pattern reads as a fact (DVD3点, r03) still count when a number is looked up.
        result.numbers |= words | loose_numbers(text)
        result.plain_numbers |= words
        result.years |= {int(n) for n in result.numbers if n.isdigit() and 1000 <= int(n) <= 2999}
        return result

    def find(self, fact: Fact, *, year_may_be_missing: bool = False) -> bool:
        """Whether this text holds ``fact`` (see the module docstring). ``year_may_be_missing``: a date here
        without a year matches ``fact``'s dated one even when the year appears nowhere here."""
        same_kind = [f for f in self.facts if f.kind == fact.kind]
        if fact.kind == "number":
            return fact.value in self.numbers
        if fact.kind == "amount":  # the same amount, or its number not as an amount in another currency
            return any(f.value == fact.value for f in same_kind) or fact.value.split(" ")[1] in self.plain_numbers
        if fact.kind == "date":
            return (any(_date_found(fact.value, f.value, self.years, year_may_be_missing) for f in same_kind)
                    or (fact.value.isdigit() and fact.value in self.numbers))
        if fact.kind == "time":
            return any(set(fact.readings) & set(f.readings) for f in same_kind)
        if fact.kind == "url":
            return any(f.value == fact.value or f.value.startswith(fact.value + "/") for f in same_kind)
        if fact.kind == "phone":
            return any(f.value == fact.value for f in same_kind)
        return any(f.value == fact.value for f in same_kind)


def _numbers_of(fact: Fact) -> set[str]:
    if fact.kind == "number":
        return {fact.value}
    if fact.kind == "amount":
        return {fact.value.split(" ")[-1]}
    if fact.kind == "date":
        return {str(part) for part in _date_parts(fact.value) if part is not None}
    if fact.kind == "time":
        numbers = set()
        for reading in fact.readings:
            hour, minute = (int(p) for p in reading.split(":"))
            numbers |= {str(hour), str(hour % 12 or 12)} | ({str(minute)} if minute else set())
        return numbers
    if fact.kind == "phone":
        return {fact.value, fact.value.lstrip("0+")}
    return set()


def _date_found(wanted: str, have: str, years: set[int], year_may_be_missing: bool) -> bool:
    y1, m1, d1 = _date_parts(wanted)
    y2, m2, d2 = _date_parts(have)
    if (m1 is not None and m1 != m2) or (d1 is not None and d1 != d2):
        return False
    if y1 is None:
        return True
    if y2 is not None:
        return y1 == y2
    return year_may_be_missing or y1 in years


# --- the metric and grounding --------------------------------------------------------------------------------


def missing_facts(answer: str, reference: str) -> list[Fact]:
    """The reference's facts the answer does not hold (the answer may leave out a date's year)."""
    have = FactSet.of(answer)
    return [fact for fact in extract_facts(reference) if not have.find(fact, year_may_be_missing=True)]


def invented(answer: str | None, source: str | None) -> list[str]:
    """The facts of ``answer`` that ``source`` does not hold, and its impossible dates, as written in the answer
    (each once)."""
    facts = extract_facts(answer)
    if not facts:
        return []
    have = FactSet.of(source)
    return list(dict.fromkeys(fact.raw for fact in facts if fact.kind == "bad_date" or not have.find(fact)))


def in_reference_notation(answer: str, reference: str) -> str:
    """``answer`` with each fact that matches one of the reference's (same kind, found as above) written as the
    reference writes it: 令和8年6月30日 becomes 2026-06-30 against gold 2026-06-30, 1.2万円 becomes 12,000円."""
    pending = extract_facts(reference)
    parts, cursor = [], 0
    for fact in extract_facts(answer):
        match = next((r for r in pending if r.kind == fact.kind
                      and FactSet([fact], years=_years_of(fact)).find(r, year_may_be_missing=True)), None)
        at = answer.find(fact.raw, cursor)
        if match is None or at < 0:
            continue
        pending.remove(match)
        parts += [answer[cursor:at], match.raw]
        cursor = at + len(fact.raw)
    return "".join(parts) + answer[cursor:]


def _years_of(fact: Fact) -> set[int]:
    year = _date_parts(fact.value)[0] if fact.kind == "date" else None
    return {year} if year is not None else set()


def invented_in_answer(task, example, prediction) -> list[str] | None:
    """The invented facts of a prediction's answer (the task's answer field) against its source
    (``task.source_of``); [] without a prediction, None when the task gives no source to check against."""
    if prediction is None:
        return []
    source = task.source_of(example, prediction)
    if source is None:
        return None
    answer = prediction.get(task.answer_field)
    return invented(None if answer is None else str(answer), source)
