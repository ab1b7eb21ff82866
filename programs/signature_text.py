"""A task file's string signature, "document, question: str -> answer: list[str]", parsed without DSPy's parser.

DSPy resolves a string signature's annotations by importing and evaluating names, so a task file (data) could run
code. Here a field is `name` or `name: TYPE`, TYPE one of `ALLOWED_TYPES`, looked up in a table: nothing is
imported, evaluated or looked up on a module. A fixed set of answers is a task file's `labels`, not a Literal.
"""

import keyword
import unicodedata

import dspy
import pydantic

from smelt.errors import shown

ALLOWED_TYPES: dict[str, type] = {
    "str": str, "int": int, "float": float, "bool": bool,
    "list[str]": list[str], "list[int]": list[int], "list[float]": list[float], "list[bool]": list[bool],
}
_TYPE_ADVICE = "use str, int, float, bool or list[str] (or list[int], list[float], list[bool])"
# Names a field cannot take: the attributes of a signature class (pydantic's BaseModel's among them), of the
# examples and predictions that carry field values, the arguments a predictor takes besides its inputs, the
# reasoning field chain of thought adds, and `id`, which smelt keys each example by.
RESERVED = frozenset(
    {n for cls in (dspy.Signature, type(dspy.Signature), pydantic.BaseModel, dspy.Prediction) for n in dir(cls)}
    | {"signature", "demos", "config", "lm", "prediction", "reasoning", "id"}
)


class SignatureTextError(ValueError):
    """A mistake in a string signature; the message is one line naming the field at fault."""


def parse_signature(text: str, instructions: str | None = None) -> type[dspy.Signature]:
    """The signature "a, b: int -> c" declares: input and output fields in their order, types from the table."""
    if text.count("->") != 1:
        raise SignatureTextError(f"{shown(text)} needs exactly one '->' between the inputs and the outputs")
    inputs_text, outputs_text = text.split("->")
    inputs = _fields(inputs_text, "inputs")
    outputs = _fields(outputs_text, "outputs")
    both = [name for name in outputs if name in inputs]
    if both:
        raise SignatureTextError(f"field {shown(both[0])} is both an input and an output; give the output another name")
    fields = {name: (kind, dspy.InputField(IS_TYPE_UNDEFINED=untyped)) for name, (kind, untyped) in inputs.items()}
    fields |= {name: (kind, dspy.OutputField()) for name, (kind, _) in outputs.items()}
    return dspy.make_signature(fields, instructions)


def _fields(side: str, which: str) -> dict[str, tuple[type, bool]]:
    """{name: (type, whether no type was written)} for one side of the arrow, in order."""
    fields: dict[str, tuple[type, bool]] = {}
    for number, item in enumerate(_split_top_level(side, which), start=1):
        name, colon, type_text = (part.strip() for part in item.partition(":"))
        name = unicodedata.normalize("NFC", name)
        if not name:
            raise SignatureTextError(f"field {number} of the {which} has no name; write name or name: type")
        _check_name(name)
        if name in fields:
            raise SignatureTextError(f"field {shown(name)} is given twice among the {which}; give each field once")
        if colon and "".join(type_text.split()) not in ALLOWED_TYPES:
            labels = f"; for a fixed set of answers give fields.{name}.labels = [...]" if which == "outputs" else ""
            raise SignatureTextError(f"field {shown(name)}: type {shown(type_text)} is not allowed; "
                                     f"{_TYPE_ADVICE}{labels}")
        fields[name] = (ALLOWED_TYPES["".join(type_text.split())] if colon else str, not colon)
    if not fields:
        raise SignatureTextError(f"no {which}; give at least one field on each side of '->'")
    return fields


def _split_top_level(side: str, which: str) -> list[str]:
    """The comma-separated items of `side`, commas inside brackets not splitting (so "dict[str, int]" stays whole,
    to be refused as a type rather than misread as two fields)."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(side):
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(char, 0)
        if depth < 0:
            raise SignatureTextError(f"{shown(side.strip())} (the {which}) closes a bracket it never opened")
        if char == "," and depth == 0:
            items.append(side[start:index])
            start = index + 1
    if depth:
        raise SignatureTextError(f"{shown(side.strip())} (the {which}) leaves a bracket open")
    items.append(side[start:])
    return [] if len(items) == 1 and not items[0].strip() else items


def _check_name(name: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureTextError(f"field {shown(name)} is not a valid name; use letters, digits and _, not a Python "
                                 "keyword, e.g. customer_message")
    if name.startswith("_"):
        raise SignatureTextError(f"field {shown(name)}: a name may not start with _; drop the leading _")
    if name in RESERVED:
        raise SignatureTextError(f"field {shown(name)}: the name is taken (by DSPy, pydantic or smelt's example id); "
                                 f"choose another, e.g. {name}_text")
