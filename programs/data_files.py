"""Reading one data file as numbered records: JSON lines, CSV or Parquet, column names in NFC, each record with
the line (or row) it came from so that an error can name it; and the sha256 a manifest records of each file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import unicodedata
from pathlib import Path
from typing import Any

from smelt.errors import SmeltError, shown
from smelt.programs.text import is_blank

SUPPORTED = ".jsonl, .json (JSON lines), .csv or .parquet"
_JSONL_SUFFIXES = (".jsonl", ".json")
DATA_SUFFIXES = (*_JSONL_SUFFIXES, ".csv", ".parquet")


def sha256_of_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def nfc_keys(record: dict) -> dict:
    """`record` with its column names in NFC, so that a name typed on one system matches one saved on another."""
    return {unicodedata.normalize("NFC", k) if isinstance(k, str) else k: v for k, v in record.items()}


def load_records(path: str | Path) -> list[tuple[int, dict]]:
    """Read a JSONL, CSV or Parquet file as (line_number, record) pairs.

    CSV line numbers count the header as line 1; Parquet rows are numbered from 1.
    """
    path = Path(path)
    if not path.is_file():
        raise SmeltError(f"{path}: no such file; pass an existing JSONL, CSV or Parquet file")
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return _read_jsonl(path, _read_text(path))
    if suffix == ".csv":
        return _read_csv(path, _read_text(path))
    if suffix == ".parquet":
        return _read_parquet(path)
    raise SmeltError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; use {SUPPORTED}")


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SmeltError(f"{path}:{line}: not valid UTF-8 text; re-save the file as UTF-8") from None


def json_type(value: Any) -> str:
    """The JSON name of a value's type ('list', 'string', 'boolean', 'number', 'null'), for messages."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def _read_jsonl(path: Path, text: str) -> list[tuple[int, dict]]:
    records = []
    # Split on "\n" only: str.splitlines() would also break on U+2028 etc., which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if is_blank(line):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise SmeltError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise SmeltError(f"{path}:{number}: nested too deeply; a data line is one JSON object of field "
                             "values") from None
        if not isinstance(record, dict):
            raise SmeltError(f"{path}:{number}: expected a JSON object, got {json_type(record)}")
        records.append((number, nfc_keys(record)))
    return records


def _read_csv(path: Path, text: str) -> list[tuple[int, dict]]:
    # The default 128 KiB field limit is too small for whole documents in one cell.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    records = []
    try:
        while True:
            start = reader.line_num + 1  # a quoted cell may span lines; report where the row starts
            try:
                row = next(reader)
            except StopIteration:
                break
            if all(is_blank(cell) for cell in row):
                continue
            if header is None:
                header = [unicodedata.normalize("NFC", cell.strip()) for cell in row]
                _check_separator(path, start, header)
                continue
            if len(row) > len(header):
                raise SmeltError(
                    f"{path}:{start}: {len(row)} values but the header has {len(header)} columns; "
                    "quote values that contain commas"
                )
            records.append((start, dict(zip(header, row, strict=False))))
    except csv.Error as e:
        raise SmeltError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    if header is None:
        raise SmeltError(f"{path}: empty CSV file; the first row must name the columns")
    return records


# Separators other than the comma, as spreadsheets in many locales save "CSV" files.
_OTHER_SEPARATORS = {";": "semicolons (;)", "\t": "tabs", "|": "vertical bars (|)"}


def _check_separator(path: Path, line: int, header: list[str]) -> None:
    """A header read as one column that holds another separator: the file is not comma-separated."""
    if len(header) != 1:
        return
    separator = next((name for char, name in _OTHER_SEPARATORS.items() if char in header[0]), None)
    if separator:
        raise SmeltError(f"{path}:{line}: the header reads as one column, {shown(header[0], 60)}: its values are "
                         f"separated by {separator}, and smelt reads comma-separated values; save the file with commas "
                         "between values (quoting values that hold commas)")


def _read_parquet(path: Path) -> list[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise SmeltError(f"{path}: not a readable Parquet file ({error_summary(e)})") from None
    return [(index + 1, nfc_keys(row)) for index, row in enumerate(rows)]


def deepest_line(text: str) -> int:
    """The line of ``text`` (JSON) where its brackets first reach their deepest nesting: where a file that is
    nested too deeply to read is at fault."""
    depth = deepest = 0
    line = at = 1
    in_string = escaped = False
    for char in text:
        if char == "\n":
            line += 1
        elif in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, line
        elif char in "]}":
            depth -= 1
    return at


def error_summary(error: Exception) -> str:
    """First line of an exception message, trimmed for a one-line error."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."
