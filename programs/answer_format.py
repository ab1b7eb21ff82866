"""The format an output field may declare, so that a checker downstream can trust the answer:

    date     an ISO 8601 calendar date, YYYY-MM-DD, that exists: 2026-06-30, not 2026-06-31, 2026-14-14 or 2026-06-1
    number   a number in ASCII digits: 42, -3, 1200, 1,200, 37.5 (not 千二百, 1.2万 or "about 40")
    label    one of the task's labels, compared as accuracy compares them (case, width, spaces, _ and - aside)
    pattern  a regular expression (Python's ``re``) the whole answer must match

A task declares them per output field: ``Task(formats={"due_date": "date", "ticket": re.compile(r"[A-Z]{3}-\\d+")})``
or, in a task file, ``[fields.due_date] format = "date"`` / ``pattern = "..."``. An answer that does not match is
*malformed*: it scores 0 whatever the metric says (``smelt.eval.evaluate``, ``smelt.eval.judge.Metric``) and is
counted in every table. Surrounding whitespace is ignored; anything else (a trailing period, words around the date)
is not.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from smelt.programs.text import label_key

FORMAT_NAMES = ("date", "number", "label")  # and "pattern", given as a regular expression

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")


@dataclass(frozen=True)
class AnswerFormat:
    name: str  # one of FORMAT_NAMES, or "pattern"
    pattern: re.Pattern | None = None  # for "pattern"

    def describe(self) -> str:
        return f"pattern {self.pattern.pattern!r}" if self.pattern is not None else self.name

    def matches(self, value: Any, labels: tuple[str, ...] | None = None) -> bool:
        """Whether ``value`` (a prediction's field) has this format; None never has."""
        if value is None:
            return False
        text = str(value).strip()
        if self.name == "date":
            return is_iso_date(text)
        if self.name == "number":
            return _NUMBER.fullmatch(text) is not None
        if self.name == "label":
            return bool(labels) and label_key(text) in {label_key(label) for label in labels}
        return self.pattern is not None and self.pattern.fullmatch(text) is not None


def is_iso_date(text: str) -> bool:
    """YYYY-MM-DD naming a day the calendar has."""
    match = _DATE.fullmatch(text)
    if not match:
        return False
    try:
        datetime.date(*(int(part) for part in match.groups()))
    except ValueError:
        return False
    return True


def answer_format(value: Any) -> AnswerFormat:
    """A Python task's declared format as an AnswerFormat: a name of FORMAT_NAMES, a compiled regular expression
    (``re.compile(...)``) or an AnswerFormat. Raises ValueError naming what is accepted."""
    if isinstance(value, AnswerFormat):
        return value
    if isinstance(value, re.Pattern):
        return AnswerFormat("pattern", value)
    if isinstance(value, str) and value in FORMAT_NAMES:
        return AnswerFormat(value)
    raise ValueError(f"{value!r} is not a format; use one of {', '.join(FORMAT_NAMES)} or re.compile(PATTERN)")


def pattern_format(text: Any) -> AnswerFormat:
    """A task file's ``pattern``: compiled now, so that a bad one is refused when the task loads (ValueError)."""
    if not isinstance(text, str) or not text:
        raise ValueError("expected a regular expression, as a non-empty string")
    try:
        return AnswerFormat("pattern", re.compile(text))
    except re.error as exc:
        raise ValueError(f"{text!r} is not a valid regular expression ({exc})") from None


def describe_malformed(task, names: list[str]) -> str:
    """One phrase for the fields ``malformed_fields`` returned: "answer field 'due' is not a date"."""
    return "; ".join(f"answer field {name!r} is not a {task.formats[name].describe()}" for name in names)


def malformed_fields(task, prediction) -> list[str]:
    """The output fields of ``prediction`` that do not have the format ``task`` declares for them (in the task's
    order); [] when none does, or the task declares no format, or there is no prediction."""
    if prediction is None or not task.formats:
        return []
    return [name for name, fmt in task.formats.items()
            if not fmt.matches(prediction.get(name), task.answer_labels)]
