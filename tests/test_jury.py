"""A jury of judges, [[n]] ratings, rubric criteria and reference-free judging, with stub judges (DummyLM)."""

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from smelt.errors import SmeltError
from smelt.eval.judge import JudgeMetric
from smelt.eval.jury import bracketed_rating, disagreements, load_criteria
from smelt.programs.registry import get_task

TASK = get_task("doc_qa")
EXAMPLE = dspy.Example(id="q1", document="The library is closed on the second Monday.",
                       question="When is the library closed?", answer="the second Monday").with_inputs(
    "document", "question")
ANSWER = dspy.Prediction(answer="On the second Monday")


class StubJudge:
    """A ResolvedLM-shaped judge answering from a list (DummyLM), with a spec name and DSPy's ChatAdapter."""

    def __init__(self, name, answers):
        self.spec = type("Spec", (), {"raw": name})()
        self.lm = DummyLM(answers)
        self.adapter = dspy.ChatAdapter()

    def context(self):
        return dspy.context(lm=self.lm, adapter=self.adapter)


class RawReplies:
    """An engine that replies with fixed raw texts, in DSPy's field format or not."""

    def __init__(self, *texts):
        self.texts = list(texts)

    def complete(self, request):
        from dspy.lm15 import Message, Response, TextPart, Usage

        return Response(id=None, model="raw", message=Message.assistant([TextPart(self.texts.pop(0))]),
                        finish_reason="stop", usage=Usage(input_tokens=1, output_tokens=1))

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))


def raw_judge(name, *texts):
    judge = StubJudge(name, [])
    judge.lm = dspy.LM(f"smelt/{name}", engine=RawReplies(*texts), cache=False, num_retries=0)
    return judge


def test_flow_benchmark_style_ratings_are_read():
    assert bracketed_rating("The answer matches. Rating: [[7]]") == 7
    assert bracketed_rating("[[3]] at first, but on reflection [[8/10]]") == 8
    assert bracketed_rating("no rating here [7]") is None


def test_a_reply_in_brackets_is_rated_not_failed():
    judge = raw_judge("big-judge", "The output names the same day. Rating: [[9]]")  # not DSPy's field format
    value, detail = JudgeMetric("judge", TASK, judge=judge).score(EXAMPLE, ANSWER)
    assert value == pytest.approx(0.9) and detail["rating"] == 9 and "judge_error" not in detail


def test_a_jury_averages_and_keeps_each_rating_and_the_spread():
    jury = [StubJudge("a/judge", [{"rationale": "same day", "rating": "9"}]),
            StubJudge("b/judge", [{"rationale": "vague", "rating": "3"}])]
    value, detail = JudgeMetric("judge", TASK, judge=jury).score(EXAMPLE, ANSWER)
    assert value == pytest.approx(0.6)
    assert detail["ratings"] == {"a/judge": 9, "b/judge": 3} and detail["spread"] == 6
    assert detail["rationales"]["b/judge"] == "vague"
    records = [{"id": "q1", "judge": detail}, {"id": "q2", "judge": {"rating": 5, "spread": 1}}]
    assert [r["id"] for r in disagreements(records)] == ["q1"]


def test_a_jury_member_without_a_rating_is_left_out_of_the_mean():
    jury = [StubJudge("a/judge", [{"rationale": "ok", "rating": "8"}]), raw_judge("b-judge", "no rating at all")]
    value, detail = JudgeMetric("judge", TASK, judge=jury).score(EXAMPLE, ANSWER)
    assert value == pytest.approx(0.8) and detail["ratings"] == {"a/judge": 8, "b-judge": None}
    assert detail["reply"] == "no rating at all"


def test_criteria_are_rated_one_by_one_and_averaged(tmp_path):
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text("accuracy: the facts match the reference\nlanguage: written in the reference's language\n",
                      encoding="utf-8")
    criteria = load_criteria(str(rubric))
    judge = StubJudge("judge", [{"rationale": "right day", "rating": "10"}, {"rationale": "English", "rating": "6"}])
    value, detail = JudgeMetric("judge", TASK, judge=judge, criteria=criteria).score(EXAMPLE, ANSWER)
    assert detail["criteria"] == {"accuracy": 10, "language": 6} and value == pytest.approx(0.8)
    prompts = [entry["messages"][-1]["content"] for entry in judge.lm.history]
    assert "accuracy: the facts match the reference" in prompts[0] and "language:" in prompts[1]


@pytest.mark.parametrize("content, message", [
    ("- just a list\n", "expected a mapping of rubric items"),
    ("accuracy: [1, 2\n", "not valid YAML"),
])
def test_a_bad_criteria_file_is_one_error(tmp_path, content, message):
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text(content, encoding="utf-8")
    with pytest.raises(SmeltError, match=message):
        load_criteria(str(rubric))
    with pytest.raises(SmeltError, match="no such file"):
        load_criteria(str(tmp_path / "missing.yaml"))


def test_without_a_reference_the_judge_sees_the_source_document():
    judge = StubJudge("judge", [{"rating": "8"}])
    unreferenced = EXAMPLE.copy(answer="")
    value, _ = JudgeMetric("judge", TASK, judge=judge).score(unreferenced, ANSWER)
    prompt = judge.lm.history[-1]["messages"][-1]["content"]
    assert value == pytest.approx(0.8)
    assert "The library is closed on the second Monday." in prompt and "reference" not in prompt.lower()
