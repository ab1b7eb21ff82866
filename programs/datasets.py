"""Load task data (JSONL, CSV or Parquet files, or Hugging Face datasets) as dspy.Example splits."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import random
import re
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from smelt.errors import SmeltError
from smelt.programs.text import is_blank, label_key

SUPPORTED = ".jsonl, .json (JSON lines), .csv or .parquet"
_JSONL_SUFFIXES = (".jsonl", ".json")
_DATA_SUFFIXES = (*_JSONL_SUFFIXES, ".csv", ".parquet")
# "owner/name" or "owner/name:config", as on the Hugging Face hub.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w.-]+)?$")
_VALIDATION_NAMES = ("validation", "dev", "valid", "val")
_SPLIT_NAMES = ("train", *_VALIDATION_NAMES, "test")  # file names (less the suffix) in a dataset folder
# Characters that show nothing: a value made only of these is empty (a zero-width space is not an answer).
_MAX_COLUMNS_SHOWN = 20


@dataclass
class Splits:
    """Train/dev/test examples plus where each split came from (file path or hub id)."""

    train: list[dspy.Example]
    dev: list[dspy.Example]
    test: list[dspy.Example]
    sources: dict[str, str] = field(default_factory=dict)


def sha256_of_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()



# ---------------------------------------------------------------------------- reading files


def _nfc_keys(record: dict) -> dict:
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


def _json_type(value: Any) -> str:
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
        if not isinstance(record, dict):
            raise SmeltError(f"{path}:{number}: expected a JSON object, got {_json_type(record)}")
        records.append((number, _nfc_keys(record)))
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


def _read_parquet(path: Path) -> list[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise SmeltError(f"{path}: not a readable Parquet file ({_short(e)})") from None
    return [(index + 1, _nfc_keys(row)) for index, row in enumerate(rows)]


# ---------------------------------------------------------------------------- records -> examples


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
    kind = "list" if isinstance(value, tuple) else _json_type(value)
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
            if isinstance(key, str) and key and not set(key) & set(".[]"):
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
    names = [str(k) for k in record]
    shown = ", ".join(names[:_MAX_COLUMNS_SHOWN])
    if len(names) > _MAX_COLUMNS_SHOWN:
        shown += f", ... ({len(names)} in all)"
    return shown or "none"


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
    raise SmeltError(f"{where}: {value!r} (field {name!r}) is not one of the labels ({', '.join(labels)}); "
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
            f"{source}:{line}: id {key!r}{via} is also the id of line {first[key]}; each example needs its own "
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


# ---------------------------------------------------------------------------- splits


def seeded_split(
    examples: list[dspy.Example],
    *,
    seed: int,
    fractions: tuple[float, float, float] = (0.4, 0.2, 0.4),
    source: str | None = None,
) -> tuple[list[dspy.Example], list[dspy.Example], list[dspy.Example]]:
    """Shuffle with random.Random(seed) and cut into train/dev/test; each split gets at least one example."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    n = len(examples)
    if n < 3:
        where = f"{source}: " if source else ""
        raise SmeltError(
            f"{where}only {n} example(s); need at least 3 to split into train/dev/test, "
            "or pass --train/--dev/--test files"
        )
    n_dev = max(1, round(n * fractions[1]))
    n_test = max(1, round(n * fractions[2]))
    while n - n_dev - n_test < 1:  # tiny sets: give train at least one
        if n_test >= n_dev:
            n_test -= 1
        else:
            n_dev -= 1
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n_train = n - n_dev - n_test
    return shuffled[:n_train], shuffled[n_train : n_train + n_dev], shuffled[n_train + n_dev :]


def load_hub_records(dataset_id: str) -> dict[str, list[tuple[int, dict]]]:
    """Load a Hugging Face dataset ("owner/name" or "owner/name:config"), or a local dataset folder.

    Returns {split name: [(row number, record), ...]} in the dataset's split order.
    """
    if Path(dataset_id).is_dir():
        return _folder_records(Path(dataset_id))
    import datasets

    name, config = dataset_id, None
    if ":" in dataset_id:
        name, _, config = dataset_id.rpartition(":")
    try:
        with _quiet_datasets():
            loaded = datasets.load_dataset(name, config) if config else datasets.load_dataset(name)
    except Exception as e:  # offline, not found, gated, bad files: all mean "cannot use this id"
        raise SmeltError(
            f"dataset {dataset_id!r} could not be loaded from the hub ({_short(e)}); download it first with "
            f"`hf download --repo-type dataset {name}` or pass a local file with --data"
        ) from None
    if not isinstance(loaded, dict):  # a single Dataset rather than a DatasetDict
        loaded = {"train": loaded}
    return {split: [(i + 1, _nfc_keys(dict(row))) for i, row in enumerate(rows)] for split, rows in loaded.items()}


@contextlib.contextmanager
def _quiet_datasets():
    """No progress bars or log lines from `datasets` while it loads: a failure is then smelt's one error line."""
    import datasets
    from datasets.utils import logging as datasets_logging

    bars_were_off, verbosity = datasets.are_progress_bars_disabled(), datasets_logging.get_verbosity()
    with warnings.catch_warnings():  # it warns when HF_DATASETS_DISABLE_PROGRESS_BARS=0 keeps them on
        warnings.simplefilter("ignore")
        datasets.disable_progress_bars()
    datasets_logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets_logging.set_verbosity(verbosity)
        if not bars_were_off:
            datasets.enable_progress_bars()


def _folder_records(folder: Path) -> dict[str, list[tuple[int, dict]]]:
    """A local dataset folder, read with smelt's own readers so that an error names the file and line: its
    train, validation (or dev, valid, val) and test files, else its one data file (split by seed later)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES)
    by_role: dict[str, Path] = {}  # train, validation, test -> its file
    for path in files:
        stem = path.stem.lower()
        if stem not in _SPLIT_NAMES:
            continue
        role = "validation" if stem in _VALIDATION_NAMES else stem
        if role in by_role:
            raise SmeltError(f"dataset folder {str(folder)!r}: {by_role[role].name} and {path.name} are both its "
                             f"{role} split; keep one")
        by_role[role] = path
    by_split = {path.stem.lower(): path for path in by_role.values()}
    if not by_split and len(files) == 1:
        by_split = {"train": files[0]}
    if not by_split:
        found = f"found {', '.join(p.name for p in files)}" if files else "no data files in it"
        raise SmeltError(f"dataset folder {str(folder)!r} could not be loaded ({found}); name its files train, "
                         f"validation and test ({SUPPORTED}), or pass a file with --data")
    loaded = {}
    for split in sorted(by_split, key=_SPLIT_NAMES.index):
        loaded[split] = load_records(by_split[split])
        if not loaded[split]:
            raise SmeltError(f"{by_split[split]}: no records; the file is empty")
    return loaded


def _hub_splits(
    dataset_id: str,
    *,
    fields: dict[str, str],
    input_keys: tuple[str, ...],
    required: tuple[str, ...],
    labels: dict[str, tuple[str, ...]] | None,
    seed: int,
) -> Splits:
    by_split = load_hub_records(dataset_id)
    if not by_split:
        raise SmeltError(f"dataset {dataset_id!r} has no splits; pass a local file with --data")

    def examples(split: str) -> list[dspy.Example]:
        source = f"{dataset_id}[{split}]"
        return to_examples(
            by_split[split], source=source, fields=fields, input_keys=input_keys, required=required, labels=labels
        )

    validation = next((name for name in _VALIDATION_NAMES if name in by_split), None)
    if "train" in by_split and "test" in by_split and validation:
        splits = Splits(examples("train"), examples(validation), examples("test"), {})
    else:
        first = next(iter(by_split))
        train, dev, test = seeded_split(examples(first), seed=seed, source=f"{dataset_id}[{first}]")
        splits = Splits(train, dev, test, {})
    splits.sources = {"train": dataset_id, "dev": dataset_id, "test": dataset_id}
    return splits


def _load_file(
    path: str,
    *,
    fields: dict[str, str],
    input_keys: tuple[str, ...],
    required: tuple[str, ...],
    labels: dict[str, tuple[str, ...]] | None,
) -> list[dspy.Example]:
    examples = to_examples(
        load_records(path), source=path, fields=fields, input_keys=input_keys, required=required, labels=labels
    )
    if not examples:
        raise SmeltError(f"{path}: no records; the file is empty")
    return examples


def load_splits(
    *,
    data: str | None,
    train: str | None,
    dev: str | None,
    test: str | None,
    fields: dict[str, str],
    input_keys: tuple[str, ...],
    required: tuple[str, ...],
    seed: int,
    labels: dict[str, tuple[str, ...]] | None = None,
) -> Splits:
    """Load train/dev/test from --train/--dev/--test files, else split --data (a file, a dataset folder or a hub
    dataset id). `labels` maps a field (the answer) to its allowed values; see `to_rows`."""
    kw = {"fields": fields, "input_keys": input_keys, "required": required, "labels": labels}
    explicit = {"train": train, "dev": dev, "test": test}
    if any(explicit.values()):
        missing = [f"--{name}" for name, path in explicit.items() if not path]
        if missing:
            raise SmeltError(
                f"{' and '.join(missing)} missing; --train, --dev and --test must be given together"
            )
        by_path = {path: _load_file(str(path), **kw) for path in dict.fromkeys(explicit.values())}  # each file once
        loaded = {name: by_path[path] for name, path in explicit.items()}
        return Splits(
            loaded["train"], loaded["dev"], loaded["test"], {k: str(v) for k, v in explicit.items()}
        )
    if not data:
        raise SmeltError("no data given; pass --data FILE (or hub dataset id) or --train/--dev/--test files")
    path = Path(data)
    if path.is_file():
        train_ex, dev_ex, test_ex = seeded_split(_load_file(data, **kw), seed=seed, source=data)
        return Splits(train_ex, dev_ex, test_ex, {"train": data, "dev": data, "test": data})
    looks_like_file = path.suffix.lower() in _DATA_SUFFIXES
    if path.is_dir() or (_HUB_ID.match(data) and not looks_like_file):
        return _hub_splits(data, seed=seed, **kw)
    raise SmeltError(
        f"--data {data}: no such file and not a hub dataset id (owner/name); "
        "pass an existing JSONL, CSV or Parquet file"
    )


def _short(error: Exception) -> str:
    """First line of an exception message, trimmed for a one-line error."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."
