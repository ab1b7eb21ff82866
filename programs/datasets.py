"""Task data as train/dev/test splits of dspy.Examples: from --train/--dev/--test files, or from one --data
source cut by a seeded shuffle; a source is a data file, a dataset folder (train/validation/test files, read with
smelt's own readers) or a Hugging Face hub dataset id."""

from __future__ import annotations

import contextlib
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import dspy

from smelt.errors import SmeltError
from smelt.programs.data_files import DATA_SUFFIXES, SUPPORTED, error_summary, load_records, nfc_keys
from smelt.programs.field_mapping import to_examples

# "owner/name" or "owner/name:config", as on the Hugging Face hub.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w.-]+)?$")
_VALIDATION_NAMES = ("validation", "dev", "valid", "val")
_SPLIT_NAMES = ("train", *_VALIDATION_NAMES, "test")  # file names (less the suffix) in a dataset folder


@dataclass
class Splits:
    """Train/dev/test examples plus where each split came from (file path or hub id)."""

    train: list[dspy.Example]
    dev: list[dspy.Example]
    test: list[dspy.Example]
    sources: dict[str, str] = field(default_factory=dict)


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
            f"dataset {dataset_id!r} could not be loaded from the hub ({error_summary(e)}); download it first with "
            f"`hf download --repo-type dataset {name}` or pass a local file with --data"
        ) from None
    if not isinstance(loaded, dict):  # a single Dataset rather than a DatasetDict
        loaded = {"train": loaded}
    return {split: [(i + 1, nfc_keys(dict(row))) for i, row in enumerate(rows)] for split, rows in loaded.items()}


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
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
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
    data: str | None = None,
    train: str | None = None,
    dev: str | None = None,
    test: str | None = None,
    fields: dict[str, str] | None = None,
    input_keys: tuple[str, ...],
    required: tuple[str, ...],
    seed: int = 0,
    labels: dict[str, tuple[str, ...]] | None = None,
) -> Splits:
    """Load train/dev/test from --train/--dev/--test files, else split --data (a file, a dataset folder or a hub
    dataset id). `fields` maps a task field to its column (default: the field's own name); `labels` maps a field
    (the answer) to its allowed values; see `to_rows`. Part of the public API (``smelt.load_splits``)."""
    kw = {"fields": fields or {}, "input_keys": input_keys, "required": required, "labels": labels}
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
    looks_like_file = path.suffix.lower() in DATA_SUFFIXES
    if path.is_dir() or (_HUB_ID.match(data) and not looks_like_file):
        return _hub_splits(data, seed=seed, **kw)
    raise SmeltError(
        f"--data {data}: no such file and not a hub dataset id (owner/name); "
        "pass an existing JSONL, CSV or Parquet file"
    )
