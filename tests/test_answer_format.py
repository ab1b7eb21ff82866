"""Answer formats (smelt.programs.answer_format): what each accepts, how a task file and a Python task declare them,
that a malformed answer scores 0 and is counted in the record, the summary and the tables, and that a bad
declaration is one error line naming the file and the field."""

import json
import re
import time
from types import SimpleNamespace

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from mistakes import ROOT, run_mistake

from smelt.errors import SmeltError
from smelt.eval.evaluate import evaluate
from smelt.eval.judge import resolve_metric
from smelt.eval.reports.tables import markdown_table, text_table
from smelt.programs.answer_format import PATTERN_MAX_CHARS, AnswerFormat, is_iso_date, pattern_format
from smelt.programs.signature_program import PredictOptions, SignatureProgram
from smelt.programs.signature_text import parse_signature
from smelt.programs.task import Task
from smelt.programs.task_file import load_task_file

DUE_DATES = ROOT / "tests" / "fixtures" / "due_dates.toml"


@pytest.mark.parametrize("text", ["2026-06-30", " 2026-06-30\n", "2024-02-29", "2026-12-31", "1989-01-08"])
def test_a_real_iso_date_is_a_date(text):
    assert AnswerFormat("date").matches(text)


@pytest.mark.parametrize("text", ["2026-14-14", "2026-06-31", "2026-06-1", "2026-02-29", "2026/06/30", "20260630",
                                  "2026-06-30.", "June 30, 2026", "令和8年6月30日", "２０２６-０６-３０",
                                  "due 2026-06-30", "", None])
def test_anything_else_is_a_malformed_date(text):
    assert not AnswerFormat("date").matches(text)
    assert text is None or not is_iso_date(str(text).strip())


def test_numbers_labels_and_patterns():
    number = AnswerFormat("number")
    assert all(number.matches(t) for t in ["42", "-3", "1200", "1,200", "37.5", "+1,234,567.25"])
    assert not any(number.matches(t) for t in ["1,20", "千二百", "1.2万", "about 40", "40 yen", "1.", "１２"])
    label = AnswerFormat("label")
    assert label.matches("Roads and Parks", ("taxes", "roads_and_parks"))  # as accuracy compares labels
    assert not label.matches("roads", ("taxes", "roads_and_parks")) and not label.matches("taxes", None)
    ticket = pattern_format(r"[A-Z]{3}-\d{4}")
    assert ticket.matches("ABC-1234") and not ticket.matches("ABC-1234 please") and not ticket.matches("abc-1234")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        pattern_format("[A-Z")


def _task(**extra) -> Task:
    signature = parse_signature("notice -> due_date, note")
    return Task(name="dates", description="d", signature=signature, options=PredictOptions,
                make_program=lambda options: SignatureProgram(signature, options), **extra)


def test_a_python_task_declares_formats_by_name_or_compiled_pattern():
    task = _task(formats={"due_date": "date", "note": re.compile(r"[a-z ]+")})
    assert task.formats["due_date"] == AnswerFormat("date") and task.formats["note"].name == "pattern"
    assert task.malformed(dspy.Prediction(due_date="2026-06-30", note="ok")) == []
    assert task.malformed(dspy.Prediction(due_date="2026-06-31", note="OK!")) == ["due_date", "note"]
    assert _task().malformed(dspy.Prediction(due_date="whenever")) == []  # no format declared: nothing to check


# ---------------------------------------------------------------------------- a pattern never hangs

EVIL = "a" * 40 + "!"  # what (a|aa)+$ backtracks on for hours with Python's re


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)+$", "(a|a)+$", "(a*)*b", "((a+)+)+c"])
def test_a_pattern_that_backtracks_without_end_is_malformed_within_a_second(tmp_path, pattern):
    path = tmp_path / "codes.toml"
    path.write_text(f'signature = "request -> code"\n[fields.code]\npattern = {json.dumps(pattern)}\n',
                    encoding="utf-8")
    from_file = load_task_file(str(path))
    signature = parse_signature("request -> code")
    in_python = Task(name="codes", description="d", signature=signature, options=PredictOptions,
                     make_program=lambda options: SignatureProgram(signature, options),
                     formats={"code": re.compile(pattern)})
    for task in (from_file, in_python):
        started = time.perf_counter()
        assert task.malformed(dspy.Prediction(code=EVIL)) == ["code"]
        assert time.perf_counter() - started < 1.0
    if pattern.endswith("$"):  # still a pattern: what it matches, it matches
        assert from_file.malformed(dspy.Prediction(code="aaaa")) == []
        assert in_python.malformed(dspy.Prediction(code="aa")) == []


def test_a_pattern_checks_answers_up_to_its_length_limit_and_keeps_the_flags_given():
    anything = pattern_format(".+")
    assert anything.matches("x" * PATTERN_MAX_CHARS) and not anything.matches("x" * (PATTERN_MAX_CHARS + 1))
    assert AnswerFormat("pattern", re.compile("[a-z]+", re.IGNORECASE)).matches("ABC")
    assert not AnswerFormat("pattern", re.compile(r"\w+", re.ASCII)).matches("é")  # re.ASCII, not regex's V1
    assert AnswerFormat("pattern", re.compile(r"\w+")).matches("é")
    multi = AnswerFormat("pattern", re.compile(r"a.b", re.DOTALL | re.VERBOSE))
    assert multi.matches("a\nb") and multi.describe() == "pattern 'a.b'"


@pytest.mark.parametrize("pattern, words", [
    (re.compile("a{1000000}"), ["repeats too much", "10,000"]),
    (re.compile("((a{100}){100}){100}"), ["repeats too much"]),
    (re.compile(b"x"), ["pattern on bytes"]),
])
def test_a_python_pattern_regex_would_expand_for_ever_is_refused_at_once(pattern, words):
    started = time.perf_counter()
    with pytest.raises(SmeltError) as error:
        _task(formats={"note": pattern})
    assert time.perf_counter() - started < 1.0
    assert "formats.note" in str(error.value) and all(word in str(error.value) for word in words), str(error.value)


@pytest.mark.parametrize("formats, words", [
    ({"notice": "date"}, ["formats: 'notice' is not an output field", "due_date, note"]),
    ({"due_date": "iso"}, ["formats.due_date", "'iso' is not a format", "date, number, label"]),
    ({"due_date": "label"}, ["formats.due_date", "needs the task's labels"]),
])
def test_a_bad_python_declaration_names_the_field(formats, words):
    with pytest.raises(SmeltError) as error:
        _task(formats=formats)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_the_date_task_file_declares_a_date():
    task = load_task_file(str(DUE_DATES))
    assert task.formats == {"due_date": AnswerFormat("date")} and task.default_metric == "fact"
    splits = task.shipped_data()
    assert all(is_iso_date(ex.due_date) for ex in splits.train + splits.dev + splits.test)
    languages = [ex.language for ex in splits.test]
    assert languages.count("ja") == languages.count("en")  # half Japanese


def _evaluate(task: Task, answers: list[str], golds: list[str], metric: str = "fact"):
    examples = [dspy.Example(id=f"x{i}", notice=f"The deadline is {gold}.", due_date=gold).with_inputs("notice")
                for i, gold in enumerate(golds)]
    dummy = DummyLM([{"due_date": answer, "note": "n"} for answer in answers])  # one thread: answers in order
    lm = SimpleNamespace(context=lambda: dspy.context(lm=dummy, adapter=dspy.ChatAdapter()))
    return evaluate(task.program({}), examples, metric=resolve_metric(metric, task), lm=lm, threads=1)


def test_a_malformed_answer_scores_zero_and_is_counted_whatever_the_metric_says():
    task = _task(formats={"due_date": "date"})
    golds = ["2026-06-30", "2026-06-30", "2026-06-01", "2026-03-31"]
    # June 30, 2026 is the gold date to `fact`, but not YYYY-MM-DD; 2026-06-1 names the right day, malformed.
    result = _evaluate(task, ["2026-06-30", "June 30, 2026", "2026-06-1", "2026-03-30"], golds)
    records = {r["id"]: r for r in result.records}
    assert [records[f"x{i}"]["malformed"] for i in range(4)] == [[], ["due_date"], ["due_date"], []]
    assert [records[f"x{i}"]["score"] for i in range(4)] == [1.0, 0.0, 0.0, 0.0]
    assert resolve_metric("fact", _task())(dspy.Example(due_date="2026-06-30"),
                                           dspy.Prediction(due_date="June 30, 2026")) == 1.0  # without the format
    assert result.summary["malformed"] == 2 and result.summary["score"] == 0.25
    for table in (text_table({"compiled test": result.summary}), markdown_table({"compiled test": result.summary})):
        assert "malformed answers" in table
    assert re.search(r"\| malformed answers \| 2 \|", markdown_table({"compiled test": result.summary}))


def test_a_task_without_formats_has_no_malformed_row():
    result = _evaluate(_task(), ["2026-06-30"], ["2026-06-30"])
    assert "malformed" not in result.records[0] and "malformed" not in result.summary
    assert "malformed answers" not in text_table({"test": result.summary})


def test_a_malformed_answer_is_never_a_bootstrapped_success():
    metric = resolve_metric("em", _task(formats={"due_date": "date"}))
    example = dspy.Example(notice="n", due_date="2026-06-01").with_inputs("notice")
    assert metric(example, dspy.Prediction(due_date="2026-06-01"), trace=[]) is True
    assert metric(example, dspy.Prediction(due_date=" 2026-06-1"), trace=[]) is False
    assert metric(example, dspy.Prediction(due_date="2026-06-1")) == 0.0


# ---------------------------------------------------------------------------- mistakes through the CLI

_DATA = '[data]\nfile = "rows.jsonl"\n'


@pytest.fixture(scope="module")
def bad_files(world) -> dict:
    folder = world["data"] / "formats"
    folder.mkdir()
    rows = [{"id": f"r{i}", "notice": f"due 2026-06-{i + 10}", "due_date": f"2026-06-{i + 10}"} for i in range(5)]
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def task(name: str, fields: str) -> None:
        (folder / f"{name}.toml").write_text(f'signature = "notice -> due_date"\n{fields}{_DATA}', encoding="utf-8")

    task("bad_regex", '[fields.due_date]\npattern = "[0-9]{4}-(0[1-9]|1[0-2]"\n')
    task("bad_name", '[fields.due_date]\nformat = "iso8601"\n')
    task("on_input", '[fields.notice]\nformat = "date"\n')
    task("label_no_labels", '[fields.due_date]\nformat = "label"\n')
    task("both", '[fields.due_date]\nformat = "date"\npattern = "x"\n')
    task("repeats", '[fields.due_date]\npattern = "(?:[0-9]{4}){4294967}"\n')  # regex: without end compiling it
    return {"folder": folder}


@pytest.mark.parametrize("name, words", [
    ("bad_regex", ["bad_regex.toml: fields.due_date.pattern", "not a valid regular expression"]),
    ("bad_name", ["bad_name.toml: fields.due_date.format", "'iso8601' is not one of date, number, label",
                  "pattern"]),
    ("on_input", ["on_input.toml: fields.notice.format", "only an output field has a format"]),
    ("label_no_labels", ["label_no_labels.toml: fields.due_date.format", "needs labels"]),
    ("both", ["both.toml: fields.due_date.pattern", "not both"]),
    ("repeats", ["repeats.toml: fields.due_date.pattern", "repeats too much", "write + or *"]),
])
def test_a_bad_format_in_a_task_file_is_one_line(world, bad_files, tmp_path, name, words):
    run_mistake(world, tmp_path / "work", ["compile", str(bad_files["folder"] / f"{name}.toml")], words)


def _loaded_run(task: Task, answer: str):
    """A loaded run as `run` and `serve` get it, its model a DummyLM (this checks plumbing, not the model)."""
    dummy = DummyLM([{"due_date": answer, "note": "n"}])
    lm = SimpleNamespace(context=lambda: dspy.context(lm=dummy, adapter=dspy.ChatAdapter()),
                         spec=SimpleNamespace(raw="dummy"))
    return SimpleNamespace(task=task, lm=lm, program=task.program({}))


@pytest.mark.parametrize("answer, warned", [("June 30, 2026", True), ("2026-06-30", False)])
def test_run_and_serve_say_when_the_answer_lacks_its_format(monkeypatch, answer, warned):
    from smelt.commands import answer as run_module
    from smelt.serving.prediction import predict

    task = _task(formats={"due_date": "date"})
    monkeypatch.setattr(run_module, "_recorded_task", lambda *args: None)
    monkeypatch.setattr(run_module, "load_run", lambda *args, **kwargs: _loaded_run(task, answer))
    lines: list[str] = []
    outputs = run_module.answer("RUN", {"notice": "Apply by June 30."}, log=lines.append)
    assert outputs["due_date"] == answer  # the answer is still printed, as the model gave it
    assert bool(lines) == warned
    if warned:
        assert lines == ["[smelt] warning: answer field 'due_date' is not a date, as task dates declares; `eval` "
                         "would score this answer 0"]
    served = predict(_loaded_run(task, answer), {"notice": "Apply by June 30."})
    assert served["malformed"] == (["due_date"] if warned else [])
    assert predict(_loaded_run(_task(), answer), {"notice": "x"})["malformed"] is None  # no format declared
