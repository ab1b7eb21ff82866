"""bench/quality_across_tasks.py's plumbing (the table it builds from two runs' summary.json, where a variant's
options go; no model runs here), and the shipped date task examples/due_dates.toml."""

import datetime
import json
import re
from pathlib import Path

import dspy
import pytest

from bench.quality_across_tasks import markdown_table, parse_task, parse_variant, row_from_runs
from smelt.errors import SmeltError
from smelt.programs.registry import get_task

ROOT = Path(__file__).resolve().parents[1]


def _split(metric: str, examples: int, score: float, malformed: int | None = None) -> dict:
    return {"metric": metric, "examples": examples, "score": score, "parse_failures": 0, "errors": 0,
            **({"malformed": malformed} if malformed is not None else {})}


def _write_summary(run_dir: Path, summary: dict) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    """A compile run and the distill run taught by it, as the commands write their summary.json."""
    compiled = _write_summary(tmp_path / "due_dates" / "20261207-100000-compile", {
        "task": "due_dates", "command": "compile", "metric": "em", "wall_s": 150.0,
        "baseline": {"dev": _split("em", 15, 0.9, 0), "test": _split("em", 30, 0.1, 21)},
        "compiled": {"dev": _split("em", 15, 0.8, 0), "test": _split("em", 30, 0.3667, 4)}})
    distilled = _write_summary(tmp_path / "due_dates" / "20261207-101000-distill", {
        "task": "due_dates", "command": "distill", "metric": "em", "wall_s": 210.0,
        "test": {"teacher": _split("em", 30, 0.3667, 4), "student (no adapter)": _split("em", 30, 0.1, 21),
                 "distilled student": _split("em", 30, 0.5333, 0)}})
    return compiled, distilled


def _rows_of(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ")]


def test_the_table_reads_every_number_from_the_runs(runs):
    compiled, distilled = runs
    row = row_from_runs("examples/due_dates.toml", "default", compiled, distilled)
    header, line = _rows_of(markdown_table([row]))
    assert header == ["task", "variant", "baseline", "compiled", "distilled",
                      "malformed (baseline/compiled/distilled)", "minutes"]
    # test scores, not dev; the distilled student's column, not the teacher's; minutes = (150 + 210) s / 60
    assert line == ["examples/due_dates.toml (em, n=30)", "default", "0.100", "0.367", "0.533", "21/4/0", "6.0"]


def test_a_task_without_formats_and_a_failed_distill_show_what_is_missing(runs, tmp_path):
    compiled, _ = runs
    summary = json.loads((compiled / "summary.json").read_text(encoding="utf-8"))
    for column in ("baseline", "compiled"):
        for split in summary[column].values():
            del split["malformed"]
    plain = _write_summary(tmp_path / "plain", summary)
    ok = row_from_runs("doc_qa", "default", plain, None)
    failed = row_from_runs("doc_qa", "no constraints", plain, None, failed="distill failed: error: out of memory")
    table = markdown_table([ok, failed])
    assert [row[2:] for row in _rows_of(table)[1:]] == [["0.100", "0.367", "—", "—", "2.5"]] * 2
    assert table.splitlines()[-1] == "doc_qa / no constraints: distill failed: error: out of memory"


def test_an_unreadable_summary_is_named(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SmeltError, match="summary.json: not readable JSON"):
        row_from_runs("doc_qa", "default", run_dir, None)


def test_variant_options_go_to_the_command_that_has_them():
    variant = parse_variant("fast=-o constrain=false --teacher-attempts 1 --seed=3 --no-cache --optimizer labeled")
    assert variant.name == "fast"
    assert variant.compile_args == ("-o", "constrain=false", "--seed=3", "--no-cache", "--optimizer", "labeled")
    # distill takes the program options from its teacher run (it refuses -o with one)
    assert variant.distill_args == ("--teacher-attempts", "1", "--seed=3", "--no-cache")
    task = parse_task("rag_qa -o rewrite=true")
    assert (task.task, task.compile_args, task.distill_args) == ("rag_qa", ("-o", "rewrite=true"), ())


@pytest.mark.parametrize(("text", "message"), [
    ("fast=--teacher-atempts 1", "--variant fast: '--teacher-atempts' is not an option of compile or distill"),
    ("fast=--epochs", "--variant fast: --epochs needs a value"),
    ("-o constrain=false", "give NAME=EXTRA_ARGS"),
])
def test_a_bad_variant_is_one_line_naming_it(text, message):
    with pytest.raises(SmeltError, match=re.escape(message)):
        parse_variant(text)


def test_the_date_task_loads_declares_its_format_and_every_gold_answer_is_an_iso_date():
    task = get_task(str(ROOT / "examples" / "due_dates.toml"))
    assert (task.name, task.input_fields, task.output_fields) == ("due_dates", ("text",), ("due_date",))
    assert task.formats["due_date"].name == "date" and task.default_metric == "em"
    splits = task.shipped_data()
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (40, 15, 30)
    examples = splits.train + splits.dev + splits.test
    assert len({example.id for example in examples}) == len(examples)
    for name in ("train", "dev", "test"):
        assert {example.language for example in getattr(splits, name)} == {"ja", "en"}, name
    for example in examples:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", example.due_date), example.id
        datetime.date.fromisoformat(example.due_date)  # a date the calendar has
        assert not task.malformed(example), example.id  # and smelt's own date format agrees
    assert task.malformed(dspy.Example(due_date="2026-06-31")) == ["due_date"]  # which does refuse a bad one
