"""``constrain=True``: each predictor of a program asks the model for answers in the shape the task declares.

For every predictor, a JSON schema of its output fields' values goes into the predictor's config as the request's
``response_format`` (``smelt.lm.completion_pattern`` reads it):

    the answer field of a task with labels     {"type": "string", "enum": [the labels]}
    a field with format = "date"               {"type": "string", "pattern": DATE_PATTERN}  (a day the calendar has)
    a field with format = "number"             {"type": "string", "pattern": NUMBER_PATTERN}
    a field with a pattern                     {"type": "string", "pattern": the task's pattern}
    ChainOfThought's reasoning                 {"type": "string"}: free text, lines without a blank one
    any other field (a free-text answer)       {"type": "string", "pattern": SENTENCE_PATTERN}: one sentence

A free-text answer is one sentence on one line: it starts with a visible character, holds no line break and no
``[[``, and ends at its first sentence end: 。！？ end it, and . ! ? followed by a space (3.5, a.m., e.g. go on), with
the bracketed ids of the documents it cites after it (``9:00 a.m. [r03]``). A small base model otherwise goes on
past its answer: a second line, the next question, a translation, or the document copied on until ``max_tokens``
(docs/benchmarks.md, "Constrained decoding"). A task whose answers are longer declares a pattern for the field
(``pattern = "(?s).+"``) or runs with ``-o constrain=false``.

The adapter turns the schema into a pattern over the text the model writes in DSPy's marker format, which the engine
or the server applies while the model generates; a model that cannot take it (a hosted chat model) answers
unconstrained, and says so once. The schema is the request's: DSPy's response cache keys on it, so a constrained
answer never stands in for an unconstrained one.
"""

import dspy
import regex

from smelt.lm.completion_pattern import FIELDS_SCHEMA_NAME
from smelt.programs.answer_format import _NUMBER, AnswerFormat

# A date that exists, YYYY-MM-DD (years 0001-9999, as answer_format.is_iso_date): 31-day months, 30-day months,
# February to the 28th, and the 29th in leap years (divisible by 4 and not by 100 unless by 400).
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DATE_PATTERN = (f"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
                f"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)")
NUMBER_PATTERN = _NUMBER.pattern  # the very pattern answer_format checks a number against
# One sentence on one line: a visible start; then anything but a line break, [ before [ (a field marker), 。！？, and
# . ! ? before a space or a line break; then at most one sentence end, and the bracketed ids of the documents it cites.
_ENDS = "。！？.!?"
_CITES = r"(?: ?\[[^\[\]\n]+\])*"
SENTENCE_PATTERN = (rf"(?:[^\s\[{_ENDS}]|\[[^\s\[{_ENDS}])"
                    rf"(?:[^\n\[{_ENDS}]|\[[^\n\[{_ENDS}]|[.!?][^\s\[{_ENDS}])*[{_ENDS}]?{_CITES}")
REASONING_FIELD = "reasoning"  # the field ChainOfThought writes before the signature's outputs
_INLINE_FLAGS = {regex.IGNORECASE: "i", regex.MULTILINE: "m", regex.DOTALL: "s", regex.VERBOSE: "x"}


def format_schema(fmt: AnswerFormat, labels: tuple[str, ...] | None) -> dict:
    """The value schema of a declared format."""
    if fmt.name == "label":
        return {"type": "string", "enum": list(labels or ())}
    if fmt.name == "date":
        return {"type": "string", "pattern": DATE_PATTERN}
    if fmt.name == "number":
        return {"type": "string", "pattern": NUMBER_PATTERN}
    flags = "".join(letter for flag, letter in _INLINE_FLAGS.items() if fmt.pattern.flags & flag)
    text = _unanchored(fmt.pattern.pattern)
    return {"type": "string", "pattern": f"(?{flags}:{text})" if flags else text}


def _unanchored(text: str) -> str:
    """A pattern without the ^ ... $ (or \\A ... \\Z) around it: the whole answer matches it anyway, and the
    answer's end follows it in the completion."""
    for start in ("^", "\\A"):
        text = text.removeprefix(start)
    for end in ("$", "\\Z"):
        if text.endswith(end) and not text.endswith("\\" + end):
            text = text[: -len(end)]
    return text


def field_schema(task, name: str) -> dict:
    """The value schema of the output field ``name`` of a predictor of ``task``'s program."""
    if name == task.answer_field and task.answer_labels:
        return {"type": "string", "enum": list(task.answer_labels)}
    if name in task.formats:
        return format_schema(task.formats[name], task.answer_labels)
    if name == REASONING_FIELD and name not in task.output_fields:
        return {"type": "string"}
    return {"type": "string", "pattern": SENTENCE_PATTERN}


def fields_format(task, signature: type[dspy.Signature]) -> dict:
    """The ``response_format`` of a predictor with this signature: its output fields' value schemas, in order."""
    properties = {name: field_schema(task, name) for name in signature.output_fields}
    return {"type": "json_schema", "json_schema": {"name": FIELDS_SCHEMA_NAME, "strict": True, "schema": {
        "type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}}}


def constrain_answers(program: dspy.Module, task) -> dspy.Module:
    """``program`` with each predictor asking for answers in the task's declared shape (module docstring)."""
    for _, predictor in program.named_predictors():
        predictor.config = {**predictor.config, "response_format": fields_format(task, predictor.signature)}
    return program
