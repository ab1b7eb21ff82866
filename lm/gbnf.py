"""A completion pattern (``completion_pattern``) as a GBNF grammar, the form llama.cpp's server takes (``grammar``).

The pattern is read by Python's own parser (``re._parser``) and written out node by node: literals, character
classes, groups, alternatives and counted repeats, which is all smelt's patterns use (labels, a date, a number, the
field structure). ``\\d``, ``\\w`` and ``\\s`` become their ASCII classes, and ``.`` any character but a line break.
A task's pattern with anything else (a look-around, a back reference, inline flags, an anchor inside it) has no
grammar here: the server then answers it unconstrained.
"""

import re
from re import _constants as sre  # the opcodes of re's parse tree
from re import _parser as re_parser

_CATEGORIES = {sre.CATEGORY_DIGIT: "0-9", sre.CATEGORY_WORD: "a-zA-Z0-9_", sre.CATEGORY_SPACE: " \\t\\n\\r\\x0B\\x0C"}
_NEGATED = {sre.CATEGORY_NOT_DIGIT: sre.CATEGORY_DIGIT, sre.CATEGORY_NOT_WORD: sre.CATEGORY_WORD,
            sre.CATEGORY_NOT_SPACE: sre.CATEGORY_SPACE}
_ENDS = {sre.AT_BEGINNING, sre.AT_BEGINNING_STRING, sre.AT_END, sre.AT_END_STRING}


class _NoGrammar(Exception):
    """The pattern uses something GBNF cannot say here."""


def gbnf_grammar(pattern: str) -> str | None:
    """``root ::= ...`` matching what ``pattern`` fully matches, or None when it uses what GBNF cannot say here."""
    try:
        tree = re_parser.parse(pattern)
    except (re.error, RecursionError):
        return None
    if tree.state.flags & (re.IGNORECASE | re.DOTALL | re.MULTILINE):
        return None
    items = list(tree)
    while items and items[0][0] is sre.AT and items[0][1] in _ENDS:  # a full match is anchored anyway
        items.pop(0)
    while items and items[-1][0] is sre.AT and items[-1][1] in _ENDS:
        items.pop()
    try:
        return f"root ::= {_sequence(items)}\n"
    except (_NoGrammar, RecursionError):
        return None


def _sequence(items) -> str:
    parts, literal = [], []
    for op, av in items:
        if op is sre.LITERAL:
            literal.append(chr(av))
            continue
        if literal:
            parts.append(_string("".join(literal)))
            literal = []
        parts.append(_node(op, av))
    if literal:
        parts.append(_string("".join(literal)))
    return " ".join(parts) if parts else '""'


def _node(op, av) -> str:
    if op is sre.NOT_LITERAL:
        return f"[^{_class_char(av)}]"
    if op is sre.ANY:
        return "[^\\n]"
    if op is sre.IN:
        return _class(av)
    if op is sre.BRANCH:
        return "(" + " | ".join(_sequence(list(branch)) for branch in av[1]) + ")"
    if op is sre.SUBPATTERN:
        _, add_flags, del_flags, inner = av
        if add_flags or del_flags:
            raise _NoGrammar("inline flags")
        return f"({_sequence(list(inner))})"
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        low, high, inner = av
        return f"({_sequence(list(inner))}){_count(low, high)}"
    raise _NoGrammar(str(op))


def _count(low: int, high) -> str:
    if high is sre.MAXREPEAT:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    if (low, high) == (0, 1):
        return "?"
    return f"{{{low}}}" if low == high else f"{{{low},{high}}}"


def _class(items) -> str:
    items = list(items)
    negate = bool(items) and items[0][0] is sre.NEGATE
    if negate:
        items = items[1:]
    if len(items) == 1 and items[0][0] is sre.CATEGORY and items[0][1] in _NEGATED:
        if negate:
            raise _NoGrammar("a negated negated category")
        return f"[^{_CATEGORIES[_NEGATED[items[0][1]]]}]"
    parts = []
    for op, av in items:
        if op is sre.LITERAL:
            parts.append(_class_char(av))
        elif op is sre.RANGE:
            parts.append(f"{_class_char(av[0])}-{_class_char(av[1])}")
        elif op is sre.CATEGORY and av in _CATEGORIES:
            parts.append(_CATEGORIES[av])
        else:
            raise _NoGrammar(str(op))
    return f"[{'^' if negate else ''}{''.join(parts)}]"


def _class_char(code: int) -> str:
    char = chr(code)
    if char.isalnum() and char.isascii() or not char.isascii() and char.isprintable() or char == " ":
        return char
    return _escape(code)


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\' or not char.isprintable() and char != " ":
            out.append({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, _escape(ord(char))))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _escape(code: int) -> str:
    return f"\\x{code:02X}" if code < 0x100 else f"\\u{code:04X}" if code < 0x10000 else f"\\U{code:08X}"
