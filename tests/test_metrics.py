import dspy
import pytest

from smelt.eval.metrics import METRICS, accuracy, exact_match, f1, match_label


def test_english_partial_overlap():
    # "the"/"a" are dropped, leaving {red, car} vs {red, truck}: P = R = 1/2.
    assert f1("the red car", "a red truck") == pytest.approx(0.5)


def test_articles_case_and_punctuation_are_ignored():
    assert f1("The Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match("an apple", "apple.") == 1.0


def test_exact_match_is_all_or_nothing():
    assert exact_match("red car", "red truck") == 0.0
    assert exact_match("red car", "car red") == 0.0
    assert f1("red car", "car red") == 1.0  # F1 is a bag of tokens


def test_japanese_character_f1():
    # 4 predicted chars, 3 reference chars, 3 shared: P = 3/4, R = 1.
    assert f1("東京都庁", "東京都") == pytest.approx(2 * 0.75 / 1.75)
    assert f1("東京都", "東京都") == 1.0


def test_japanese_punctuation_and_spaces_are_ignored():
    assert exact_match("「東京 都」。", "東京都") == 1.0


def test_nfkc_full_width_digits():
    assert exact_match("１２３", "123") == 1.0
    assert exact_match("３７７６メートル", "3776メートル") == 1.0


def test_japanese_reference_scores_english_prediction_by_characters():
    assert f1("Tokyo", "東京") == 0.0
    assert exact_match("Tokyo", "東京") == 0.0


def test_empty_cases():
    assert f1("", "red car") == 0.0
    assert f1("red car", "") == 0.0
    assert f1("", "") == 1.0
    assert f1("the", "") == 1.0  # nothing left after normalisation on either side
    assert exact_match("", "") == 1.0
    assert exact_match("", "red") == 0.0


def _metric(name: str, task=None):
    from smelt.eval.judge import resolve_metric
    from smelt.programs.registry import get_task

    return resolve_metric(name, task or get_task("doc_qa"))


def test_f1_metric_reads_the_tasks_answer_field():
    example = dspy.Example(question="q", answer="a red truck").with_inputs("question")
    assert _metric("f1")(example, dspy.Prediction(answer="the red car")) == pytest.approx(0.5)
    assert _metric("em")(example, dspy.Prediction(answer="Red truck.")) == 1.0
    assert _metric("f1")(example, None) == 0.0
    assert _metric("f1")(example, dspy.Prediction(reasoning="no answer field")) == 0.0
    assert _metric("em")(example, None) == 0.0
    assert _metric("f1")(example, None, trace=[]) is False


def test_f1_metric_returns_pass_fail_while_bootstrapping():
    example = dspy.Example(question="q", answer="a red truck").with_inputs("question")
    assert _metric("f1")(example, dspy.Prediction(answer="the red car"), trace=[]) is True  # f1 = 0.5
    assert _metric("f1")(example, dspy.Prediction(answer="blue car"), trace=[]) is False  # f1 = 0
    three = dspy.Example(question="q", answer="one two three four").with_inputs("question")
    assert _metric("f1")(three, dspy.Prediction(answer="one"), trace=[]) is False  # f1 = 0.4


LABELS = ("waste_and_recycling", "taxes", "roads_and_parks")


def test_accuracy_matches_labels_loosely_but_never_guesses():
    assert accuracy("taxes", "taxes", LABELS) == 1.0
    assert accuracy(" Taxes. ", "taxes", LABELS) == 1.0
    assert accuracy("Waste and Recycling", "waste_and_recycling", LABELS) == 1.0
    assert accuracy("ｔａｘｅｓ", "taxes", LABELS) == 1.0  # full-width letters
    assert accuracy("taxes: the resident tax office", "taxes", LABELS) == 1.0  # starts with exactly one label
    assert accuracy("roads_and_parks", "taxes", LABELS) == 0.0
    assert accuracy("tax", "taxes", LABELS) == 0.0
    assert accuracy("I think it is about taxes", "taxes", LABELS) == 0.0  # a label mentioned is not a label chosen
    assert match_label("waste-and-recycling", LABELS) == "waste_and_recycling"
    assert match_label("parks", LABELS) is None
    assert accuracy("Taxes", "taxes") == 1.0  # without a label list: the same loose comparison


def test_accuracy_metric_reads_labels_from_a_literal_answer_field():
    from typing import Literal

    from smelt.programs.task import Task

    class Route(dspy.Signature):
        inquiry: str = dspy.InputField()
        department: Literal["taxes", "roads_and_parks"] = dspy.OutputField()

    task = Task(name="route", description="d", signature=Route, make_program=lambda o: dspy.Predict(Route))
    assert task.answer_labels == ("taxes", "roads_and_parks") and task.default_metric == "accuracy"
    metric = _metric("accuracy", task)
    example = dspy.Example(inquiry="x", department="taxes").with_inputs("inquiry")
    assert metric(example, dspy.Prediction(department="Taxes")) == 1.0
    assert metric(example, dspy.Prediction(department="roads and parks")) == 0.0
    assert metric(example, dspy.Prediction(department="roads and parks"), trace=[]) is False


def test_every_declared_answer_metric_has_its_function():
    """One declaration a metric (programs/metric_names.py); eval/metrics.py maps each answer metric to its function,
    and the judge is eval/judge.py's."""
    from smelt.programs.metric_names import METRICS_DECLARED

    answers = {name for name, info in METRICS_DECLARED.items() if info.kind == "answer"}
    assert set(METRICS) == answers == {"f1", "em", "accuracy", "fact"}
    assert {name for name, info in METRICS_DECLARED.items() if info.kind != "answer"} == {"judge"}
