"""Demos with distinct answers (smelt.optimizers.demo_diversity): when the rule is on, which repeat it replaces and
with what. DSPy's DummyLM answers here (plumbing); tests/test_due_dates_e2e.py runs the rule through the CLI on the
embedded model."""

from types import SimpleNamespace

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from mistakes import ROOT

from smelt.eval.judge import resolve_metric
from smelt.optimizers.demo_diversity import rule_applies
from smelt.optimizers.prompt import CompileSettings, compile_program
from smelt.programs.registry import get_task
from smelt.programs.signature_program import PredictOptions, SignatureProgram
from smelt.programs.signature_text import parse_signature
from smelt.programs.task import Task
from smelt.programs.task_file import load_task_file

DUE_DATES = load_task_file(str(ROOT / "tests" / "fixtures" / "due_dates.toml"))
TRAIN = DUE_DATES.shipped_data().train  # d01-d03 answer 2026-04-30, d04-d05 2026-03-31, d06 2026-05-15


def _compile(trainset, answers: dict[str, str], *, diverse: bool | None, optimizer: str = "bootstrap",
             demos: int = 2, log=None, predictor: str = "predict"):
    """Compile the due-date program with a DummyLM answering each notice (a key of ``answers``) as given (chain of
    thought: after a reasoning of its own for each notice)."""
    def reply(notice: str, due: str) -> dict:
        return ({"reasoning": f"The notice says {notice[:12]}."} if predictor == "cot" else {}) | {"due_date": due}

    dummy = DummyLM({notice: reply(notice, due) for notice, due in answers.items()})
    lm = SimpleNamespace(context=lambda: dspy.context(lm=dummy, adapter=dspy.ChatAdapter()))
    settings = CompileSettings(max_demos=demos, max_labeled_demos=demos, diverse_demos=diverse)
    compiled = compile_program(DUE_DATES.program({"predictor": predictor}), optimizer, trainset=trainset,
                               metric=resolve_metric("fact", DUE_DATES), lm=lm, settings=settings, log=log)
    return compiled.predictors()[0].demos


def _right(examples) -> dict[str, str]:
    return {ex.notice: ex.due_date for ex in examples}


def test_off_two_bootstrapped_demos_share_an_answer():
    demos = _compile(TRAIN[:6], _right(TRAIN[:6]), diverse=False)
    assert [d.due_date for d in demos] == ["2026-04-30", "2026-04-30"] and all(d.augmented for d in demos)


def test_on_the_repeat_is_replaced_by_a_new_bootstrapped_demo():
    lines = []
    demos = _compile(TRAIN[:6], _right(TRAIN[:6]), diverse=True, log=lines.append)
    assert [d.due_date for d in demos] == ["2026-04-30", "2026-03-31"] and all(d.augmented for d in demos)
    assert demos[1].notice == TRAIN[3].notice  # the first train example with another answer
    assert len(lines) == 1 and "repeated the answer '2026-04-30'" in lines[0] and "bootstrapped" in lines[0]


def test_chain_of_thought_demos_are_compared_by_their_answer_not_their_reasoning():
    off = _compile(TRAIN[:6], _right(TRAIN[:6]), diverse=False, predictor="cot")
    assert [d.due_date for d in off] == ["2026-04-30", "2026-04-30"] and off[0].reasoning != off[1].reasoning
    on = _compile(TRAIN[:6], _right(TRAIN[:6]), diverse=True, predictor="cot")
    assert [d.due_date for d in on] == ["2026-04-30", "2026-03-31"] and on[1].reasoning.startswith("The notice")


def test_on_by_default_for_a_task_with_an_answer_format():
    assert [d.due_date for d in _compile(TRAIN[:6], _right(TRAIN[:6]), diverse=None)] == ["2026-04-30", "2026-03-31"]


def test_a_labeled_demo_stands_in_when_no_new_answer_passes():
    answers = _right(TRAIN[:3]) | {ex.notice: "2026-01-01" for ex in TRAIN[3:6]}  # wrong on every other answer
    demos = _compile(TRAIN[:6], answers, diverse=True)
    assert [d.due_date for d in demos] == ["2026-04-30", "2026-03-31"]
    assert demos[0].augmented and not demos[1].get("augmented") and demos[1].id == TRAIN[3].id  # the gold example


def test_repeats_stay_when_train_offers_no_other_answer():
    demos = _compile(TRAIN[:3], _right(TRAIN[:3]), diverse=True)
    assert [d.due_date for d in demos] == ["2026-04-30", "2026-04-30"]


def test_labeled_demos_are_made_distinct_too():
    # LabeledFewShot samples with random.Random(0): of four examples it takes the 4th, 2nd and 1st.
    train = [TRAIN[3], TRAIN[0], TRAIN[5], TRAIN[1]]  # 03-31, 04-30, 05-15, 04-30
    off = _compile(train, {}, diverse=False, optimizer="labeled", demos=3)
    assert [d.due_date for d in off] == ["2026-04-30", "2026-04-30", "2026-03-31"]
    on = _compile(train, {}, diverse=True, optimizer="labeled", demos=3)
    assert [d.due_date for d in on] == ["2026-04-30", "2026-05-15", "2026-03-31"]


def _long_answer_task() -> Task:
    signature = parse_signature("notice -> summary")
    return Task(name="summaries", description="d", signature=signature, options=PredictOptions,
                make_program=lambda options: SignatureProgram(signature, options))


@pytest.mark.parametrize("task, expected", [
    (load_task_file(str(ROOT / "examples" / "inquiry_routing.toml")), True),  # labels
    (load_task_file(str(ROOT / "examples" / "due_dates.toml")), True),  # an answer format, shipped
    (DUE_DATES, True),  # an answer format
    (get_task("doc_qa"), True),  # short answers: a median of a dozen characters
    (_long_answer_task(), False),
])
def test_which_tasks_have_the_rule_by_default(task, expected):
    field = task.answer_field
    trainset = task.shipped_data().train if task.load_data else [
        dspy.Example(notice="n", **{field: "A long summary of the notice that runs well past sixty characters."})]
    assert rule_applies(task, trainset) is expected
