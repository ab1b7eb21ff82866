"""The regular expression a constrained answer's completion text must match, in DSPy's marker format.

A program asks for constrained answers with a ``response_format`` naming each output field's values
(``smelt.programs.answer_constraint``: ``{"type": "json_schema", "json_schema": {"name": "smelt_fields", "schema":
{"type": "object", "properties": {field: value schema}}}}``). A value schema is one of

    {"type": "string", "enum": [...]}       one of these labels, exactly
    {"type": "string", "pattern": "..."}    the whole value matches this regular expression (a date, a number, a
                                            task's pattern, an answer's one sentence)
    {"type": "string"}                      free text in this format (``FREE_TEXT``): lines that start visibly, with
                                            no ``[[`` (a field marker: a model must not invent fields) and no blank
                                            line (which ends a field)

``PrefillChatAdapter`` turns it into one pattern over the text the model writes after the prefilled first marker:
each field's value, the next field's marker between them, then the end (a blank line and the completion marker, which
a stop string or an end token may cut short). That pattern travels to the model as the request's ``response_format``
again, in the form ``completion_format`` writes and ``completion_pattern_of`` reads: a schema of one string, the
completion text itself, with the pattern. The engine (or the server) holds every token to it.
"""

from __future__ import annotations

import threading
from typing import Any

from smelt.log import to_stderr

FIELDS_SCHEMA_NAME = "smelt_fields"  # a program's request: the values of each output field
COMPLETION_SCHEMA_NAME = "smelt_completion_text"  # the adapter's: the completion text as one string and its pattern

COMPLETED_MARKER = "[[ ## completed ## ]]"
_said: set[tuple[str, str]] = set()
_said_lock = threading.Lock()
# A visible first character, then no "[[" and no line break ([ is allowed when something other than [ follows it).
_LINE = r"(?:[^\s\[]|\[[^\s\[])(?:[^\n\[]|\[[^\n\[])*"
FREE_TEXT = rf"{_LINE}(?:\n{_LINE})*"  # lines without a blank one between them
_META = set("\\.+*?()|[]{}^$")


def field_marker(name: str) -> str:
    return f"[[ ## {name} ## ]]"


def escape(text: str) -> str:
    """``text`` as a pattern matching it literally. Only the metacharacters are escaped (``re.escape`` also escapes
    spaces, ``-`` and ``#``), so the pattern reads as its text and holds no escape that a server's regex engine (vLLM's
    and SGLang's backends, llama.cpp's grammar) might not know."""
    out = []
    for char in text:
        if char in _META:
            out.append("\\" + char)
        elif char == "\n":
            out.append(r"\n")
        elif char == "\t":
            out.append(r"\t")
        elif char == "\r":
            out.append(r"\r")
        else:
            out.append(char)
    return "".join(out)


def value_pattern(schema: dict[str, Any] | None) -> str:
    """The pattern of one field's value, from its value schema (module docstring); free text when it has none."""
    schema = schema or {}
    if schema.get("enum"):
        return "(?:" + "|".join(escape(str(label)) for label in schema["enum"]) + ")"
    if schema.get("pattern"):
        return f"(?:{schema['pattern']})"
    return FREE_TEXT


def completion_pattern(output_fields: list[str], values: dict[str, dict]) -> str:
    """The pattern of a completion whose first field's marker is already written (the prefill): each field's value,
    the next field's marker between them (a blank line before it, a line break after), then the end."""
    parts = []
    for index, name in enumerate(output_fields):
        if index:
            parts.append(escape(f"\n\n{field_marker(name)}\n"))
        parts.append(value_pattern(values.get(name)))
    return "".join(parts) + "(?:" + escape(f"\n\n{COMPLETED_MARKER}") + ")?"


def requested_values(response_format: Any) -> dict[str, dict] | None:
    """The value schemas of a program's ``response_format`` (``FIELDS_SCHEMA_NAME``), or None when it is not one."""
    inner = _json_schema(response_format)
    if inner is None or inner.get("name") != FIELDS_SCHEMA_NAME:
        return None
    properties = (inner.get("schema") or {}).get("properties")
    return dict(properties) if isinstance(properties, dict) else None


def completion_format(pattern: str) -> dict:
    """The ``response_format`` carrying a completion pattern to the model (OpenAI's chat shape, as DSPy takes it)."""
    return {"type": "json_schema",
            "json_schema": {"name": COMPLETION_SCHEMA_NAME, "schema": {"type": "string", "pattern": pattern}}}


def completion_pattern_of(response_format: Any) -> str | None:
    """The completion pattern a request's ``response_format`` carries (the chat shape, or lm15's canonical one
    ``{"type": "json_schema", "name": ..., "schema": ...}``), or None when it carries none."""
    inner = _json_schema(response_format)
    if inner is None or inner.get("name") != COMPLETION_SCHEMA_NAME:
        return None
    pattern = (inner.get("schema") or {}).get("pattern")
    return pattern if isinstance(pattern, str) else None


def _json_schema(response_format: Any) -> dict | None:
    """``{"name": ..., "schema": ...}`` of a json_schema response format in either shape; None for anything else."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    inner = response_format.get("json_schema", response_format)
    return inner if isinstance(inner, dict) else None


def takes_completion_pattern(lm) -> bool:
    """Whether ``lm``'s engine applies a completion pattern (smelt's in-process engine, a completion endpoint)."""
    return bool(getattr(getattr(lm, "engine", None), "takes_completion_pattern", False))


def say_unconstrained(model: str, reason: str) -> None:
    """"[smelt] MODEL: answers are not constrained (REASON)", once per model and reason in this process."""
    with _said_lock:
        if (model, reason) in _said:
            return
        _said.add((model, reason))
    to_stderr(f"[smelt] {model}: answers are not constrained ({reason}); they are checked after they are written")


def without_constraint(lm_kwargs: dict[str, Any], model: str, reason: str) -> dict[str, Any]:
    """``lm_kwargs`` without a program's requested answer shape, which ``model`` cannot take (said once)."""
    if requested_values(lm_kwargs.get("response_format")) is None:
        return lm_kwargs
    say_unconstrained(model, reason)
    return {key: value for key, value in lm_kwargs.items() if key != "response_format"}
