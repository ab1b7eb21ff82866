"""From read records to a task's rows: ``--field`` mapping (a task field -> a column, or a path into nested
values such as answers.text[0]), the checks on every field (present, text, not blank, one of the labels), unique
ids, and the rows as dspy.Examples. Each error names the file, the line and the --field to fix."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dspy

from smelt.errors import SmeltError, shown
from smelt.programs.data_files import json_type
from smelt.programs.text import is_blank, label_key

_MAX_COLUMNS_SHOWN = 20
_MAX_NAME_SHOWN = 60  # characters of each column name in a message (longer keys are never suggested)


def parse_field_mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    """Turn CLI options like ("question=prompt", "answer=answers.text[0]") into {task field: column}.

    A column may be a path into nested values: dict keys joined by dots, list items as [N].
    """
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not name or not column:
            raise SmeltError(f"--field {pair!r}: expected FIELD=COLUMN, e.g. --field question=prompt")
        try:
            parse_path(column)
        except ValueError as e:
            raise SmeltError(
                f"--field {name}={column}: not a valid column path ({e}); join keys with dots and write "
                "list items as [N], e.g. answers.text[0] (or rename the column if that is its name)"
            ) from None
        if name in mapping and mapping[name] != column:
            raise SmeltError(f"--field {name}=...: given twice ({mapping[name]!r} and {column!r}); keep one")
        mapping[name] = column
    return mapping


_INDEX = re.compile(r"\[(\d+)\]")


def parse_path(column: str) -> list[str | int]:
    """Split "answers.text[0]" into ["answers", "text", 0]; ValueError (saying why) if malformed.

    A plain column name is a path of one key.
    """
    steps: list[str | int] = []
    parts = column.split(".")
    for number, part in enumerate(parts):
        key, bracket, rest = part.partition("[")
        if bracket and not key:
            raise ValueError(f"{part!r}: a list index must follow a key")
        if not key:
            ends = "starts" if number == 0 else "ends" if number == len(parts) - 1 else ""
            raise ValueError(f"{ends} with a dot" if ends else "empty key between dots")
        if "]" in key:
            raise ValueError(f"{key!r} has ']' without '['")
        steps.append(key)
        rest = bracket + rest
        while rest:
            match = _INDEX.match(rest)
            if not match:
                bad = rest[: rest.find("]") + 1] if "]" in rest else rest
                raise ValueError(f"{bad!r} is not a list index [N] with N a whole number")
            steps.append(int(match.group(1)))
            rest = rest[match.end() :]
    return steps


def _format_path(steps: list[str | int]) -> str:
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _a(value: Any) -> str:
    """'a list', 'a string', 'null'... for messages about what a value is."""
    if isinstance(value, dict):
        return "a dict"
    kind = "list" if isinstance(value, tuple) else json_type(value)
    return kind if kind == "null" else f"a {kind}"


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _resolve(record: dict, column: str, path: list[str | int]) -> tuple[Any, str | None]:
    """(value, None) for `column` in `record`, the exact key first, then the path; (None, why) if it is not there."""
    if column in record or len(path) == 1:
        return record.get(column), None if column in record else f"no column {column!r}"
    value: Any = record
    for i, step in enumerate(path):
        here = _format_path(path[:i])
        if isinstance(step, int):
            if not isinstance(value, list | tuple):
                return None, f"{here} is {_a(value)}, not a list"
            if step >= len(value):
                return None, f"{here} has {_items(len(value))}"
        elif i == 0:
            if step not in value:
                return None, f"no column {step!r}"
        elif not isinstance(value, dict):
            return None, f"{here} is {_a(value)}, not a dict"
        elif step not in value:
            return None, f"{here} has no key {step!r} (keys: {_columns_here(value)})"
        value = value[step]
    if _missing(value):
        return None, f"{column} is {_a(None) if value is None else 'NaN'}"
    return value, None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # NaN: an empty cell from pandas


def _paths_to_text(value: Any, prefix: str, depth: int = 0) -> Iterable[str]:
    """Paths below `prefix` that end at a non-empty string, depth first in key/item order."""
    if isinstance(value, str):
        if not is_blank(value):
            yield prefix
    elif depth < 6 and isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and 0 < len(key) <= _MAX_NAME_SHOWN and not set(key) & set(".[]"):
                yield from _paths_to_text(item, f"{prefix}.{key}", depth + 1)
    elif depth < 6 and isinstance(value, list | tuple):
        for index, item in enumerate(value[:10]):
            yield from _paths_to_text(item, f"{prefix}[{index}]", depth + 1)


def _text_path(record: dict, column: str, value: Any) -> str | None:
    """A path from `column` into the nested `value` that reaches a string (checked against the record)."""
    for candidate in _paths_to_text(value, column):
        try:
            found, why = _resolve(record, candidate, parse_path(candidate))
        except ValueError:
            return None
        return candidate if why is None and isinstance(found, str) else None
    return None


def _not_text(source: str, line: int, name: str, column: str, value: Any, record: dict) -> SmeltError:
    where = f" (column {column!r})" if column != name else ""
    if isinstance(value, dict):
        what = f"a dict (keys: {_columns_here(value)})" if value else "an empty dict"
    else:
        what = f"a list of {_items(len(value))}" if value else "an empty list"
    path = _text_path(record, column, value)
    if path:
        todo = f"map the text inside it with --field {name}={path}"
    else:
        todo = f"map --field {name}=COLUMN to a column or path (like COLUMN.key[0]) that holds text"
    return SmeltError(f"{source}:{line}: field {name!r}{where} is {what}, not text; {todo}")


def _text(value: Any) -> str | None:
    return None if _missing(value) else str(value).strip()


def _columns_here(record: dict) -> str:
    names = [_clip(str(k)) for k in itertools.islice(record, _MAX_COLUMNS_SHOWN)]
    listed = ", ".join(names)
    if len(record) > _MAX_COLUMNS_SHOWN:
        listed += f", ... ({len(record)} in all)"
    return listed or "none"


def _clip(name: str) -> str:
    return name if len(name) <= _MAX_NAME_SHOWN else name[: _MAX_NAME_SHOWN - 3] + "..."


# Long on purpose: one pass over a file's records, each check naming the line and the field where it fails.
def to_rows(
    records: Iterable[tuple[int, dict]],
    *,
    source: str,
    fields: dict[str, str],
    input_keys: tuple[str, ...],
    required: tuple[str, ...],
    labels: dict[str, tuple[str, ...]] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """Rename columns to task fields, check required ones, keep the rest as metadata.

    `fields` maps task field -> column or path (answers.text[0]); an exact column name wins over a path.
    Task fields (and `id`) must be text, numbers or booleans, not dicts or lists. `labels` maps a field to its
    allowed values: each value must be one of them, compared as the accuracy metric compares, and is stored in
    the label's own spelling.
    """
    task_fields = list(dict.fromkeys((*required, *input_keys, *fields, "id")))
    columns = {name: unicodedata.normalize("NFC", fields.get(name, name)) for name in task_fields}  # as read
    paths = {}
    for name, column in columns.items():
        try:
            paths[name] = parse_path(column)
        except ValueError:  # not from parse_field_mapping: only the exact column name
            paths[name] = [column]
    mapped = [name for name in task_fields if columns[name] != name]
    basename = Path(source).name or source
    rows = []
    for line, record in records:
        row: dict[str, Any] = {}
        for name in task_fields:
            column = columns[name]
            raw, why = _resolve(record, column, paths[name])
            if why is not None or _missing(raw):
                if name not in required:
                    continue
                if len(paths[name]) > 1 and column not in record:
                    extra = f"; columns here: {_columns_here(record)}" if why.startswith("no column") else ""
                    raise SmeltError(
                        f"{source}:{line}: missing field {name!r} (path {column!r} per --field: {why}{extra}); "
                        f"fix --field {name}={column} or drop the line"
                    )
                via = f"column {column!r} per --field; " if column != name else ""
                raise SmeltError(
                    f"{source}:{line}: missing field {name!r} ({via}columns here: {_columns_here(record)}); "
                    f"map it with --field {name}=COLUMN"
                )
            if isinstance(raw, dict | list | tuple):
                raise _not_text(source, line, name, column, raw, record)
            value = _text(raw)
            if is_blank(value) and name in required:
                where = f" (column {column!r})" if column != name else ""
                raise SmeltError(
                    f"{source}:{line}: field {name!r}{where} is empty; fill it in or drop the line"
                )
            if name in (labels or {}):
                value = _as_label(value, labels[name], f"{source}:{line}", name)
            row[name] = value
        # A mapped column (a path's top-level column) is not metadata; nor is a column named like a task
        # field that is mapped to another column.
        consumed = {columns[n] if columns[n] in record else paths[n][0] for n in mapped}
        for key, value in record.items():
            if key in row or key in consumed or key in columns or value is None:
                continue
            value = _text(value) if isinstance(value, str | int | float | bool) else value
            if value is not None:
                row[key] = value
        if is_blank(str(row.get("id") or "")):
            row["id"] = f"{basename}:{line}"
        rows.append((line, row))
    return rows


def _as_label(value: str, labels: tuple[str, ...], where: str, name: str) -> str:
    """The label `value` names, as the accuracy metric matches a reference (case, width, spaces, _ and - aside)."""
    key = label_key(value)
    for label in labels:
        if label_key(label) == key:
            return label
    raise SmeltError(f"{where}: {shown(value)} (field {name!r}) is not one of the labels ({', '.join(labels)}); "
                     "correct it or drop the line")


def check_unique_ids(rows: Iterable[tuple[int, dict[str, Any]]], *, source: str, fields: dict[str, str]) -> None:
    """Fail on the first row whose id an earlier row of the same file (or hub split) already has."""
    first: dict[str, int] = {}
    column = fields.get("id", "id")
    for line, row in rows:
        key = str(row["id"])
        if key not in first:
            first[key] = line
            continue
        if column != "id":
            via, fix = f" (column {column!r} per --field)", f"drop --field id={column}"
        else:
            via, fix = "", "rename it"
        raise SmeltError(
            f"{source}:{line}: id {shown(key)}{via} is also the id of line {first[key]}; each example needs its own "
            f"id (is this column a document id? map a unique column with --field id=COLUMN, or {fix} so smelt "
            "numbers the lines)"
        )


def to_examples(
    records: Iterable[tuple[int, dict]],
    *,
    source: str,
    fields: dict[str, str],
    input_keys: tuple[str, ...],
    required: tuple[str, ...],
    labels: dict[str, tuple[str, ...]] | None = None,
) -> list[dspy.Example]:
    """Build dspy.Examples; `fields` maps task field -> column (unmapped fields keep their own name).

    Ids must be unique within `records` (results are keyed by id downstream). See `to_rows` for `labels`.
    """
    rows = to_rows(records, source=source, fields=fields, input_keys=input_keys, required=required, labels=labels)
    check_unique_ids(rows, source=source, fields=fields)
    return [dspy.Example(**row).with_inputs(*input_keys) for _, row in rows]
