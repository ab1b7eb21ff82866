"""The evaluation loop when things go wrong: failing metric calls, a dead model, Ctrl-C, resuming, truncation."""

import contextlib
import json
import threading
import time
from types import SimpleNamespace

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from smelt.errors import SmeltError
from smelt.eval.evaluate import evaluate, summarize
from smelt.eval.judge import AnswerMetric, Metric
from smelt.eval.reports.tables import text_table
from smelt.programs.registry import get_task

TASK = get_task("doc_qa")
LM = SimpleNamespace(context=contextlib.nullcontext)  # a ResolvedLM-shaped stand-in: the fakes call no model


def examples(n: int) -> list[dspy.Example]:
    return [dspy.Example(id=f"e{i}", document="The library closes on Mondays.", question=f"q{i}", answer="Mondays")
            .with_inputs("document", "question") for i in range(n)]


class Program:
    """Answers "Mondays", or raises ``fail`` (an exception, or a function of the question giving one or None)."""

    def __init__(self, fail=None, delay=0.0):
        self.fail, self.delay, self.calls = fail, delay, []
        self.lock = threading.Lock()

    def __call__(self, document, question):
        with self.lock:
            self.calls.append(question)
        time.sleep(self.delay)
        error = self.fail(question) if callable(self.fail) else self.fail
        if error is not None:
            raise error
        return dspy.Prediction(answer="Mondays")


class FakeJudge(Metric):
    """A judge metric whose call raises or whose reply does not parse, by question."""

    def __init__(self, raises=(), unparseable=(), spec="openai/stub-judge"):
        super().__init__("judge", TASK, pass_mark=0.7)
        self.raises, self.unparseable = set(raises), set(unparseable)
        self.judge = SimpleNamespace(spec=SimpleNamespace(raw=spec))

    def score(self, example, prediction):
        if "*" in self.raises or example.question in self.raises:
            raise RuntimeError("RateLimitError: 429 Too Many Requests")
        if example.question in self.unparseable:
            return 0.0, {"rating": None, "rationale": "the judge's output could not be parsed", "judge_error": True}
        return 0.8, {"rating": 8, "rationale": "same"}


def lines(path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


# 1. A failing metric call is a failed example, not a crash.

def test_a_failing_judge_call_is_a_failed_example_and_counted(tmp_path):
    metric = FakeJudge(raises={"q1"}, unparseable={"q2"})
    result = evaluate(Program(), examples(4), metric=metric, lm=LM, threads=2, out_path=tmp_path / "e.jsonl")
    by_id = {r["id"]: r for r in result.records}
    assert by_id["e1"]["error"] == "judge: RuntimeError: RateLimitError: 429 Too Many Requests"
    assert by_id["e1"]["judge_error"] is True and by_id["e1"]["score"] == 0.0
    assert by_id["e2"]["judge_error"] is True and by_id["e2"]["error"] is None and by_id["e2"]["score"] == 0.0
    assert by_id["e0"]["score"] == 0.8 and "judge_error" not in by_id["e0"]
    assert result.summary["judge_errors"] == 2 and result.summary["errors"] == 0
    assert result.summary["parse_failures"] == 0
    assert "judge failures" in text_table({"test": result.summary})


def test_the_judge_failures_row_only_when_there_are_some():
    summary = summarize([{"score": 1.0, "parse_error": False, "error": None, "latency_s": 0.1, "prompt_tokens": 1,
                          "completion_tokens": 1, "lm_calls": 1}], "f1")
    assert summary["judge_errors"] == 0 and summary["truncated"] == 0
    table = text_table({"test": summary})
    assert "judge failures" not in table and "max_tokens" not in table


# 2. A run whose model calls all fail stops early.

def test_every_model_call_failing_stops_after_eight(tmp_path):
    out = tmp_path / "e.jsonl"
    program = Program(fail=ConnectionError("connection refused"), delay=0.02)
    with pytest.raises(SmeltError) as caught:
        evaluate(program, examples(40), metric=AnswerMetric("f1", TASK), lm=LM, threads=2, out_path=out)
    assert str(caught.value) == ("every model call failed (8 of 8 so far; the first: ConnectionError: connection "
                                 "refused); check the model spec, --api-base, the API key and that the server is up")
    assert len(lines(out)) == 8  # what finished stays; nothing after the eighth is written
    time.sleep(0.1)  # calls in flight at the stop finish in the background
    assert len(program.calls) < 20 and len(lines(out)) == 8  # the queued rest was cancelled


def test_fewer_examples_than_eight_all_failing_also_stop(tmp_path):
    with pytest.raises(SmeltError, match=r"every model call failed \(3 of 3 so far"):
        evaluate(Program(fail=TimeoutError("timed out")), examples(3), metric=AnswerMetric("f1", TASK), lm=LM,
                 threads=2)


def test_every_judge_call_failing_stops_naming_the_judge(tmp_path):
    out = tmp_path / "e.jsonl"
    with pytest.raises(SmeltError) as caught:
        evaluate(Program(), examples(20), metric=FakeJudge(raises={"*"}), lm=LM, threads=1, out_path=out)
    assert str(caught.value) == ("every call to the judge openai/stub-judge failed (8 of 8 so far; the first: "
                                 "RuntimeError: RateLimitError: 429 Too Many Requests); check --judge, --api-base "
                                 "and that the server is up")
    assert len(lines(out)) == 8


def test_one_success_among_the_first_eight_keeps_going():
    program = Program(fail=lambda q: None if q == "q0" else ConnectionError("refused"))
    result = evaluate(program, examples(12), metric=AnswerMetric("f1", TASK), lm=LM, threads=1)
    assert result.summary["examples"] == 12 and result.summary["errors"] == 11


def test_parse_failures_are_not_call_failures():
    error = AdapterParseError("ChatAdapter", TASK.signature, "gibberish")
    result = evaluate(Program(fail=error), examples(10), metric=AnswerMetric("f1", TASK), lm=LM, threads=2)
    assert result.summary["parse_failures"] == 10 and result.summary["errors"] == 0


def test_resume_retries_failed_calls_but_not_parse_failures(tmp_path):
    out = tmp_path / "e.jsonl"
    base = {"gold": "Mondays", "metric": "judge", "latency_s": 0.1, "prompt_tokens": 1, "completion_tokens": 1,
            "lm_calls": 1, "cached": False}
    written = [
        {"id": "e0", "score": 0.8, "parse_error": False, "error": None},
        {"id": "e1", "score": 0.0, "parse_error": True, "error": "unparseable output: 'x'"},
        {"id": "e2", "score": 0.0, "parse_error": False, "error": "APIConnectionError: refused"},
        {"id": "e3", "score": 0.0, "parse_error": False, "error": "judge: RateLimitError: 429", "judge_error": True},
        {"id": "e4", "score": 0.0, "parse_error": False, "error": None, "judge_error": True},  # unparseable verdict
    ]
    out.write_text("".join(json.dumps(base | r) + "\n" for r in written) + '{"id": "e5", "sco', encoding="utf-8")
    program = Program()
    result = evaluate(program, examples(6), metric=FakeJudge(), lm=LM, threads=2, out_path=out)
    assert sorted(program.calls) == ["q2", "q3", "q5"]
    ids = [r["id"] for r in lines(out)]
    assert sorted(ids) == ["e0", "e1", "e2", "e3", "e4", "e5"]  # the failed ones replaced, not duplicated
    assert result.summary["errors"] == 0 and result.summary["judge_errors"] == 1


# 3. Ctrl-C returns at once.

def test_an_interrupt_returns_at_once_and_leaves_whole_lines(tmp_path):
    out = tmp_path / "e.jsonl"
    release, finished = threading.Event(), []

    class Slow(Program):
        def __call__(self, document, question):
            with self.lock:
                self.calls.append(question)
            if question not in ("q0", "q1"):
                release.wait(10)
                finished.append(question)
            return dspy.Prediction(answer="Mondays")

    def progress(count, mean):
        if count == 2:
            raise KeyboardInterrupt

    program = Slow()
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluate(program, examples(12), metric=AnswerMetric("f1", TASK), lm=LM, threads=4, out_path=out,
                     progress=progress)
        assert time.perf_counter() - started < 1.0  # did not wait for the examples in flight
        assert sorted(r["id"] for r in lines(out)) == ["e0", "e1"]
    finally:
        release.set()
    deadline = time.time() + 5
    while len(finished) < len(program.calls) - 2 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert len(finished) == len(program.calls) - 2 and len(program.calls) < 12  # the queued rest never ran
    assert sorted(r["id"] for r in lines(out)) == ["e0", "e1"]  # the late ones wrote nothing to the closed file


# 4. Truncation warnings: counted per example, one line per evaluation, none of DSPy's.

def test_answers_cut_at_max_tokens_are_flagged_and_reported_once(embedded_model, capfd):
    from smelt.lm import lm_for_spec

    test = TASK.shipped_data().test[:3]
    lm = lm_for_spec("gemma-3-270m", device="cpu", max_tokens=4, cache=False)
    program = TASK.program(TASK.default_options())
    for predictor in program.predictors():  # the program caps answers at 64 tokens: let the model's 4 apply
        predictor.config.pop("max_tokens", None)
    capfd.readouterr()
    try:
        result = evaluate(program, test, metric=AnswerMetric("f1", TASK), lm=lm, threads=3, desc="tiny")
    finally:
        lm.engine.close()
    err = capfd.readouterr().err
    cut = [r for r in result.records if r.get("truncated")]
    assert len(cut) >= 2  # 4 tokens cannot hold an answer and its end marker
    assert result.summary["truncated"] == len(cut)
    assert err.count("answers hit max_tokens") == 1
    assert f"[smelt] tiny: {len(cut)} of 3 answers hit max_tokens" in err
    assert "truncated" not in err and "max_tokens=" not in err  # nothing of DSPy's warning
