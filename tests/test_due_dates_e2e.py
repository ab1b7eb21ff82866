"""End to end through the CLI on the embedded model: a date task file (tests/fixtures/due_dates.toml, half Japanese)
whose answer declares format = "date". Malformed answers are counted in summary.json and report.md and score 0;
compile's demos give distinct answers unless --no-diverse-demos."""

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "tests" / "fixtures" / "due_dates.toml"
FIXTURES = ROOT / "tests" / "fixtures" / "due_dates"


def _rows(split: str) -> dict[str, dict]:
    lines = (FIXTURES / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["id"]: row for row in map(json.loads, lines)}


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Compile runs with labeled demos: the diverse-demos rule on (the default) and off, answers unconstrained so
    that malformed ones occur (of these four train examples LabeledFewShot's seeded sample takes the 4th, 2nd and
    1st, two of which answer 2026-04-30); and one with the defaults, answers held to the date's shape."""
    folder = tmp_path_factory.mktemp("due_dates")
    train, dev, test = _rows("train"), _rows("dev"), _rows("test")
    files = ["--train", _write(folder / "train.jsonl", [train[i] for i in ("d04", "d01", "d06", "d02")]),
             "--dev", _write(folder / "dev.jsonl", [dev["v02"]]),
             "--test", _write(folder / "test.jsonl", [test[i] for i in ("t01", "t02", "t05", "t18")])]
    found = {}
    unconstrained = ["-o", "constrain=false"]
    for name, extra in (("on", unconstrained), ("off", [*unconstrained, "--no-diverse-demos"]), ("constrained", [])):
        root = folder / name
        result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "compile", str(TASK), *files, "--optimizer",
                                 "labeled", "--max-labeled-demos", "3", "--threads", "4", "--latency-sample", "0",
                                 "--no-cache", "--runs-root", str(root), *extra],
                                cwd=folder, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        found[name] = next((root / "due_dates_fixture").iterdir())
    return found


def _is_iso_date(text) -> bool:
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        return False
    try:
        datetime.date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _malformed_counts(run_dir: Path) -> dict[str, int]:
    """Malformed answers per column and split, checked record by record against summary.json."""
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    counts = {}
    for label in ("baseline", "compiled"):
        for split in ("dev", "test"):
            name = f"{'baseline.' if label == 'baseline' else ''}{split}"
            records = [json.loads(line) for line in (run_dir / "eval" / f"{name}.jsonl").read_text().splitlines()]
            malformed = [r for r in records if not _is_iso_date(r["prediction"])]
            assert all(r["malformed"] == ["due_date"] and r["score"] == 0.0 for r in malformed), name
            assert all(r["malformed"] == [] for r in records if r not in malformed), name
            assert summary[label][split]["malformed"] == len(malformed), name
            counts[f"{label} {split}"] = len(malformed)
    return counts


def test_malformed_answers_are_counted_in_summary_and_report(runs):
    run_dir = runs["on"]
    counts = _malformed_counts(run_dir)
    # The 270M base model, unprompted by demos, runs on past a bare date: its baseline answers are malformed.
    assert counts["baseline test"] >= 1
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    header = next(line for line in report.splitlines() if line.startswith("|  |"))
    columns = [cell.strip() for cell in header.strip("|").split("|")][1:]
    row = next(line for line in report.splitlines() if line.startswith("| malformed answers |"))
    assert [int(cell) for cell in row.strip("|").split("|")[1:]] == [counts[c] for c in columns]


def test_compiled_demos_give_distinct_answers_unless_turned_off(runs):
    def answers(run_dir: Path) -> list[str]:
        state = json.loads((run_dir / "program.json").read_text(encoding="utf-8"))
        return [demo["due_date"] for demo in state["predict"]["demos"]]

    on, off = answers(runs["on"]), answers(runs["off"])
    assert len(on) == 3 and len(set(on)) == 3
    assert len(off) == 3 and len(set(off)) == 2  # without the rule, two of them answer 2026-04-30
    manifest = json.loads((runs["off"] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["options"]["diverse_demos"] is False


def test_the_default_constraint_holds_every_answer_to_a_date(runs):
    """The same task and data with constrain on (the default): the model can only write a date."""
    assert set(_malformed_counts(runs["constrained"]).values()) == {0}
    manifest = json.loads((runs["constrained"] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["program_options"]["constrain"] is True
