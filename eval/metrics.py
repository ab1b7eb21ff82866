"""SQuAD-style answer metrics (character-level for Japanese, as in JSQuAD) and their DSPy wrappers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from smelt.eval.text import is_japanese, metric_tokens

if TYPE_CHECKING:
    import dspy

# A bootstrapped demo must reach this F1 to count as a success.
PASS_F1 = 0.5


def f1(prediction: str, reference: str) -> float:
    """Token-bag F1; tokens are characters when the reference is Japanese, words otherwise."""
    japanese = is_japanese(reference)
    pred = metric_tokens(prediction, japanese)
    ref = metric_tokens(reference, japanese)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred)
    recall = common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if the answers agree after normalisation (whitespace ignored for Japanese), else 0.0."""
    japanese = is_japanese(reference)
    return float(metric_tokens(prediction, japanese) == metric_tokens(reference, japanese))


def _answers(example: dspy.Example, prediction: dspy.Prediction | None) -> tuple[str, str] | None:
    predicted = getattr(prediction, "answer", None) if prediction is not None else None
    if predicted is None:
        return None
    return str(predicted), str(example.answer)


def f1_metric(example: dspy.Example, prediction: dspy.Prediction | None, trace: Any = None) -> float | bool:
    """DSPy metric: F1 of `prediction.answer` against `example.answer` (0.0 if there is no answer).

    While DSPy bootstraps demos (`trace` is not None) it returns a bool, `f1 >= 0.5`, so only
    mostly-right traces become demos.
    """
    answers = _answers(example, prediction)
    score = f1(*answers) if answers else 0.0
    if trace is not None:
        return score >= PASS_F1
    return score


def em_metric(example: dspy.Example, prediction: dspy.Prediction | None, trace: Any = None) -> float:
    """DSPy metric: exact match of `prediction.answer` against `example.answer`; 1.0 or 0.0 either way."""
    answers = _answers(example, prediction)
    return exact_match(*answers) if answers else 0.0


METRICS: dict[str, Callable[..., float | bool]] = {"f1": f1_metric, "em": em_metric}
