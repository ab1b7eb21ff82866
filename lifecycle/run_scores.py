"""The scores a finished run measured, read from its summary.json: {column: {split: score}} for every shape a
command writes it in, and which column scored the program the run serves. ``smelt.load_run(...).scores`` and
``serve``'s ``/v1/program`` both read them here."""

import json
import math
from pathlib import Path

from smelt.errors import SmeltError
from smelt.eval.reports.run_records import kept_column

SPLITS = ("test", "dev", "train")


def read_summary(run_dir: Path, *, strict: bool = False) -> dict:
    """``run_dir/summary.json`` as a dict; {} while the run has none. NaN and Infinity read as absent (null). A file
    that is not a JSON object is {} too, or, with ``strict``, a SmeltError naming it."""
    path = Path(run_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda _: None)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        if strict:
            raise SmeltError(f"{path}: not readable JSON ({type(exc).__name__}); a run's summary is the JSON object "
                             "smelt wrote") from None
        return {}
    return summary if isinstance(summary, dict) else {}


def scores_of(summary: dict) -> dict[str, dict[str, float]]:
    """{column: {split: score}} from a summary: ``{"compiled": {"test": {...}}}`` (compile), ``{"test":
    {"distilled student": {...}}}`` (distill, sweep), and a split's own scores (eval, under its command's name). A
    score that is not a finite number is left out."""
    columns: dict[str, dict[str, float]] = {}
    for key, value in summary.items():
        if not isinstance(value, dict):
            continue
        if key in SPLITS:
            own = _score(value) is not None
            for label, values in ({str(summary.get("command") or "program"): value} if own else value).items():
                if (score := _score(values)) is not None:
                    columns.setdefault(label, {})[key] = score
        else:
            for split in SPLITS:
                if (score := _score(value.get(split))) is not None:
                    columns.setdefault(key, {})[split] = score
    return columns


def served_column(summary: dict, columns: dict) -> str | None:
    """Which column scored the program a run serves: a compile's compiled program, a distill's distilled student
    (or the program ``--then-compile`` kept), a sweep's best trial (the first of its best, kept as best/)."""
    command = summary.get("command")
    if command == "compile":
        column = "compiled"
    elif command == "distill":
        column = kept_column(summary)
    elif command == "sweep":
        best = summary.get("best")
        number = best[0].get("number") if isinstance(best, list) and best and isinstance(best[0], dict) else None
        column = next((c for c in columns if c.startswith(f"trial {number} (best")), None)
    else:
        column = None
    return column if column in columns else None


def _score(values) -> float | None:
    score = values.get("score") if isinstance(values, dict) else None
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        return None
    return score
