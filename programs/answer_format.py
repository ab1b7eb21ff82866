"""The format an output field may declare, so that a checker downstream can trust the answer:

    date     an ISO 8601 calendar date, YYYY-MM-DD, that exists: 2026-06-30, not 2026-06-31, 2026-14-14 or 2026-06-1
    number   a number in ASCII digits: 42, -3, 1200, 1,200, 37.5 (not 千二百, 1.2万 or "about 40")
    label    one of the task's labels, compared as accuracy compares them (case, width, spaces, _ and - aside)
    pattern  a regular expression (Python's ``re`` syntax) the whole answer must match, within a time limit

A task declares them per output field: ``Task(formats={"due_date": "date", "ticket": re.compile(r"[A-Z]{3}-\\d+")})``
or, in a task file, ``[fields.due_date] format = "date"`` / ``pattern = "..."``. An answer that does not match is
*malformed*: it scores 0 whatever the metric says (``smelt.eval.evaluate``, ``smelt.eval.judge.Metric``) and is
counted in every table. Surrounding whitespace is ignored; anything else (a trailing period, words around the date)
is not.

A pattern comes from a task file, which is data: it is matched by the ``regex`` module with a time limit
(``PATTERN_TIMEOUT_S`` of CPU, the GIL released meanwhile) on an answer of at most ``PATTERN_MAX_CHARS``, so that a
pattern that backtracks without end, such as ``(a|aa)+$``, cannot hang compile, eval or serve: an answer it cannot
decide in time, or a longer one, is malformed. A pattern whose counted repeats the ``regex`` module would expand into
more than ``_MAX_EXPANDED`` pieces when it compiles it (``(a{1000}){1000}``) is refused when the task loads.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from re import _parser as re_parser  # the parse tree of Python's re, to measure a pattern before regex compiles it
from typing import Any

import regex

from smelt.programs.text import label_key

FORMAT_NAMES = ("date", "number", "label")  # and "pattern", given as a regular expression

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")

PATTERN_TIMEOUT_S = 0.1  # CPU seconds of one pattern on one answer; past them the answer is malformed
PATTERN_MAX_CHARS = 4000  # the longest answer a pattern is matched on; a longer one is malformed
_MAX_EXPANDED = 10_000  # pieces of a pattern once its counted repeats are expanded, as regex does when compiling
_FLAGS = ("IGNORECASE", "MULTILINE", "DOTALL", "UNICODE", "VERBOSE", "ASCII")  # by name: re.ASCII is regex.V1
_REPEATS = (re_parser.MAX_REPEAT, re_parser.MIN_REPEAT, re_parser.POSSESSIVE_REPEAT)


@dataclass(frozen=True)
class AnswerFormat:
    name: str  # one of FORMAT_NAMES, or "pattern"
    pattern: regex.Pattern | None = None  # for "pattern" (a re.Pattern given here is compiled again by regex)

    def __post_init__(self):
        if isinstance(self.pattern, re.Pattern):  # never matched by re: it has no time limit
            object.__setattr__(self, "pattern", recompiled(self.pattern))

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
        return self.pattern is not None and matches_pattern(self.pattern, text)


def matches_pattern(pattern: regex.Pattern, text: str) -> bool:
    """Whether ``pattern`` matches the whole of ``text``; False for a text over PATTERN_MAX_CHARS, or one the pattern
    cannot decide within PATTERN_TIMEOUT_S (the GIL released meanwhile: other threads and the server's loop go on)."""
    if len(text) > PATTERN_MAX_CHARS:
        return False
    try:
        return pattern.fullmatch(text, timeout=PATTERN_TIMEOUT_S, concurrent=True) is not None
    except TimeoutError:
        return False


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
        return AnswerFormat("pattern", value)  # compiled again by regex
    if isinstance(value, str) and value in FORMAT_NAMES:
        return AnswerFormat(value)
    raise ValueError(f"{value!r} is not a format; use one of {', '.join(FORMAT_NAMES)} or re.compile(PATTERN)")


def pattern_format(text: Any) -> AnswerFormat:
    """A task file's ``pattern``: compiled now, so that a bad one is refused when the task loads (ValueError)."""
    if not isinstance(text, str) or not text:
        raise ValueError("expected a regular expression, as a non-empty string")
    return AnswerFormat("pattern", compile_pattern(text))


def recompiled(pattern: re.Pattern) -> regex.Pattern:
    """A Python task's ``re.compile(...)``, compiled by regex from its text and flags (checked as compile_pattern)."""
    if not isinstance(pattern.pattern, str):
        raise ValueError(f"{pattern.pattern!r} is a pattern on bytes; an answer is text: re.compile a str")
    return compile_pattern(pattern.pattern, *(name for name in _FLAGS if pattern.flags & getattr(re, name)))


def compile_pattern(text: str, *flags: str) -> regex.Pattern:
    """``text`` (Python's ``re`` syntax, with ``flags`` named as in _FLAGS) compiled by regex, for matches_pattern.
    ValueError for a pattern re refuses, or one whose counted repeats would expand past _MAX_EXPANDED pieces (regex
    compiles ``a{1000000}`` as a million pieces: seconds and hundreds of MB, and without end for larger counts)."""
    re_flags = regex_flags = 0
    for name in flags:
        re_flags, regex_flags = re_flags | getattr(re, name), regex_flags | getattr(regex, name)
    try:
        re.compile(text, re_flags)
        expanded = _expanded_size(re_parser.parse(text, re_flags))
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"{text!r} is not a valid regular expression ({exc})") from None
    if expanded > _MAX_EXPANDED:
        raise ValueError(f"{text!r} repeats too much: its counted repeats ({{N}}, {{N,}}, nested ones multiplied) ask "
                         f"for more than {_MAX_EXPANDED:,} pieces; an answer is matched on at most "
                         f"{PATTERN_MAX_CHARS:,} characters, so write + or * for long runs")
    try:
        return regex.compile(text, regex_flags)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"{text!r} is not a valid regular expression ({exc})") from None


def _expanded_size(pattern: re_parser.SubPattern, times: int = 1) -> int:
    """How many pieces ``pattern`` (re's parse tree) becomes with each repeat's minimum count written out, ``times``
    over; counting stops past _MAX_EXPANDED."""
    total = 0
    for op, av in pattern:
        total += times
        if op in _REPEATS:
            low, _, inner = av
            total += _expanded_size(inner, times * max(low, 1))
        else:
            total += sum(_expanded_size(inner, times) for inner in _inner_patterns(av))
        if total > _MAX_EXPANDED:
            break
    return total


def _inner_patterns(av: Any) -> list[re_parser.SubPattern]:
    """The sub-patterns in a parse-tree node's argument: a group's, an assertion's, each branch's."""
    if isinstance(av, re_parser.SubPattern):
        return [av]
    if isinstance(av, tuple | list):
        return [inner for part in av for inner in _inner_patterns(part)]
    return []


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
