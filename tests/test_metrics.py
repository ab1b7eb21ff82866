import dspy
import pytest

from smelt.eval.metrics import METRICS, em_metric, exact_match, f1, f1_metric


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


def test_f1_metric_reads_answers():
    example = dspy.Example(question="q", answer="a red truck").with_inputs("question")
    assert f1_metric(example, dspy.Prediction(answer="the red car")) == pytest.approx(0.5)
    assert em_metric(example, dspy.Prediction(answer="Red truck.")) == 1.0


def test_missing_prediction_scores_zero():
    example = dspy.Example(question="q", answer="red").with_inputs("question")
    assert f1_metric(example, None) == 0.0
    assert f1_metric(example, dspy.Prediction(reasoning="no answer field")) == 0.0
    assert em_metric(example, None) == 0.0
    assert f1_metric(example, None, trace=[]) is False


def test_f1_metric_returns_pass_fail_while_bootstrapping():
    example = dspy.Example(question="q", answer="a red truck").with_inputs("question")
    assert f1_metric(example, dspy.Prediction(answer="the red car"), trace=[]) is True  # f1 = 0.5
    assert f1_metric(example, dspy.Prediction(answer="blue car"), trace=[]) is False  # f1 = 0
    three = dspy.Example(question="q", answer="one two three four").with_inputs("question")
    assert f1_metric(three, dspy.Prediction(answer="one"), trace=[]) is False  # f1 = 0.4


def test_registry():
    assert METRICS == {"f1": f1_metric, "em": em_metric}
