"""The judge metric's plumbing, with DSPy's DummyLM standing in for the judge model."""

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from smelt.errors import SmeltError
from smelt.eval.judge import AnswerMetric, JudgeMetric, resolve_metric
from smelt.programs.registry import get_task

TASK = get_task("doc_qa")


class FakeJudge:
    """A ResolvedLM-shaped wrapper around a DummyLM."""

    def __init__(self, answers):
        self.lm = DummyLM(answers)

    def context(self):
        return dspy.context(lm=self.lm, adapter=dspy.ChatAdapter())


EXAMPLE = dspy.Example(question="When is the library closed?", answer="the second Monday").with_inputs("question")


def test_rating_is_normalised_and_rationale_kept():
    metric = JudgeMetric("judge", TASK, judge=FakeJudge([{"rationale": "Same day as the reference.", "rating": "8"}]))
    value, detail = metric.score(EXAMPLE, dspy.Prediction(answer="On the second Monday"))
    assert value == pytest.approx(0.8)
    assert detail == {"rating": 8, "rationale": "Same day as the reference."}


def test_ratings_are_clamped_to_0_10():
    metric = JudgeMetric("judge", TASK, judge=FakeJudge([{"rationale": "x", "rating": "14"}]))
    assert metric.score(EXAMPLE, dspy.Prediction(answer="Monday"))[0] == 1.0


def test_empty_answer_gets_the_lowest_rating_without_asking_the_judge():
    judge = FakeJudge([])
    value, detail = JudgeMetric("judge", TASK, judge=judge).score(EXAMPLE, dspy.Prediction(answer="  "))
    assert value == 0.0 and detail["rating"] == 0 and judge.lm.history == []


def test_unparseable_judge_output_scores_zero_and_is_flagged():
    metric = JudgeMetric("judge", TASK, judge=FakeJudge([{"rationale": "fine", "rating": "eight out of ten"}]))
    value, detail = metric.score(EXAMPLE, dspy.Prediction(answer="Monday"))
    assert value == 0.0 and detail["judge_error"] is True


def test_bootstrap_mode_returns_pass_or_fail():
    metric = JudgeMetric("judge", TASK, judge=FakeJudge([{"rationale": "ok", "rating": "7"}] * 2))
    assert metric(EXAMPLE, dspy.Prediction(answer="Monday"), trace=[]) is True


def test_metric_choice():
    assert isinstance(resolve_metric(None, TASK), AnswerMetric) and resolve_metric(None, TASK).name == "f1"
    assert resolve_metric("em", TASK).name == "em"
    assert isinstance(resolve_metric(None, TASK, judge=FakeJudge([])), JudgeMetric)
    with pytest.raises(SmeltError, match="--judge"):
        resolve_metric("judge", TASK)
    with pytest.raises(SmeltError, match="--metric 'bleu'"):
        resolve_metric("bleu", TASK)


def test_the_judge_sees_every_input_the_reference_and_the_output():
    judge = FakeJudge([{"rationale": "same", "rating": "9"}])
    example = dspy.Example(document="The library closes on the second Monday.", question="When is it closed?",
                           answer="the second Monday").with_inputs("document", "question")
    JudgeMetric("judge", TASK, judge=judge).score(example, dspy.Prediction(answer="second Monday"))
    prompt = judge.lm.history[-1]["messages"][-1]["content"]
    assert "document: The library closes on the second Monday." in prompt
    assert "question: When is it closed?" in prompt
    assert "the second Monday" in prompt and "second Monday" in prompt


class DownJudge:
    """A judge whose every call fails as a dead server's would (DSPy retries nothing: num_retries=0)."""

    class Engine:
        def complete(self, request):
            raise ConnectionError("connection refused")

        def stream(self, request):
            raise ConnectionError("connection refused")

    def __init__(self):
        self.lm = dspy.LM("smelt/down-judge", engine=self.Engine(), cache=False, num_retries=0)
        self.spec = type("Spec", (), {"raw": "openai/down-judge"})()

    def context(self):
        return dspy.context(lm=self.lm, adapter=dspy.ChatAdapter())


def test_a_failed_judge_call_raises_rather_than_scoring_as_unparseable():
    metric = JudgeMetric("judge", TASK, judge=DownJudge())
    with pytest.raises(Exception, match="connection refused") as caught:
        metric.score(EXAMPLE, dspy.Prediction(answer="Monday"))
    assert not isinstance(caught.value, (TypeError, ValueError))


def test_a_failed_judge_call_is_recorded_on_the_example():
    from contextlib import nullcontext
    from types import SimpleNamespace

    from smelt.eval.evaluate import evaluate_example

    program = lambda **inputs: dspy.Prediction(answer="Monday")  # noqa: E731
    record = evaluate_example(program, EXAMPLE, JudgeMetric("judge", TASK, judge=DownJudge()),
                              SimpleNamespace(context=nullcontext))
    assert record["prediction"] == "Monday" and record["score"] == 0.0 and record["judge_error"] is True
    assert record["error"].startswith("judge: ") and "connection refused" in record["error"]
    assert record["parse_error"] is False


def test_an_unparseable_verdict_keeps_the_judges_reply():
    class Garbage(FakeJudge):
        def context(self):
            return dspy.context(lm=self.lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False))

    judge = Garbage([])
    judge.lm = DummyLM([{"rationale": "hmm"}])  # no rating field at all
    value, detail = JudgeMetric("judge", TASK, judge=judge).score(EXAMPLE, dspy.Prediction(answer="Monday"))
    assert value == 0.0 and detail["judge_error"] is True and "hmm" in detail["reply"]
