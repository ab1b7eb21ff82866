"""Deterministic answer metrics: SQuAD-style F1 and exact match (characters for Japanese, as in JSQuAD), label
accuracy, and `fact` (F1 when the answer holds every number, date, amount... of the reference, else 0; see
`smelt.eval.facts`). Any metric name + "+grounded" scores 0 an answer stating a fact its source does not."""

from collections import Counter
from collections.abc import Callable

from smelt.eval.fact_matching import in_reference_notation, missing_facts
from smelt.programs.metric_names import METRICS_DECLARED
from smelt.programs.text import is_japanese, label_key, metric_tokens

# A bootstrapped demo must reach this F1 to count as a success.
PASS_F1 = METRICS_DECLARED["f1"].pass_mark


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


def match_label(prediction: str, labels: tuple[str, ...]) -> str | None:
    """The label a prediction names: equal to one after `label_key`, or starting with exactly one."""
    key = label_key(prediction)
    for label in labels:
        if label_key(label) == key:
            return label
    starting = [label for label in labels if key.startswith(label_key(label) + " ")]
    return starting[0] if len(starting) == 1 else None


def accuracy(prediction: str, reference: str, labels: tuple[str, ...] | None = None) -> float:
    """1.0 if the prediction names the reference label (see `match_label`), else 0.0."""
    if labels:
        return float(match_label(prediction, labels) == reference)
    return float(label_key(prediction) == label_key(reference))


def fact(prediction: str, reference: str) -> float:
    """0 when a fact of the reference (number, amount, date, time, phone, e-mail, URL) is not among the answer's;
    else the F1 of the answer with its facts written as the reference writes them (令和8年6月30日 against gold
    2026-06-30 scores 1); plain F1 for a reference without facts (see `smelt.eval.fact_matching`)."""
    if missing_facts(prediction, reference):
        return 0.0
    return f1(in_reference_notation(prediction, reference), reference)


METRICS: dict[str, Callable[..., float]] = {"f1": f1, "em": exact_match, "accuracy": accuracy, "fact": fact}
