"""Deterministic answer metrics: SQuAD-style F1 and exact match (characters for Japanese, as in JSQuAD), label
accuracy, and `fact` (F1 when the answer holds every number, date, amount... of the reference, else 0; see
`smelt.eval.facts`). Any metric name + "+grounded" scores 0 an answer stating a fact its source does not. A task's
own metric comes in through `register_metric` (public: `smelt.register_metric`)."""

import re
from collections import Counter
from collections.abc import Callable

from smelt.errors import SmeltError
from smelt.eval.fact_matching import in_reference_notation, missing_facts
from smelt.programs.metric_names import METRICS_DECLARED, MetricInfo
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


# What each answer metric declared in programs/metric_names.py computes: that table is where a metric is
# declared (name, kind, pass mark, help), this one only names its function (tests/test_metrics.py: the same keys).
METRICS: dict[str, Callable[..., float]] = {"f1": f1, "em": exact_match, "accuracy": accuracy, "fact": fact}
_BUILT_IN = frozenset(METRICS_DECLARED)  # f1, em, accuracy, fact, judge: never replaced
_METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


def register_metric(name: str, fn: Callable[[str, str], float], *, kind: str = "answer", pass_mark: float = 0.5,
                    help: str | None = None) -> None:
    """Make ``name`` a metric a task (``Task(metric=name)``) and ``name+grounded`` may name: ``fn(prediction,
    reference)`` -> a score from 0 to 1, for the task's answer field. ``pass_mark``: the score a bootstrapped demo
    must reach. The one way to add a metric from outside smelt: it fills both tables (``METRICS`` here, and the
    names checked before anything loads, ``smelt.programs.metric_names``). Registering a name again replaces it;
    a built-in metric is never replaced. ``--metric NAME`` on the command line is checked before a task file is
    imported, so it knows the built-in names only; a task's ``metric=`` names a registered one."""
    where = f"register_metric({name!r})"
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise SmeltError(f"{where}: a metric name is letters, digits, _, . or -, starting with a letter "
                         "(NAME+grounded comes with it)")
    if name in _BUILT_IN:
        raise SmeltError(f"{where}: {name} is a built-in metric; give yours another name")
    if not callable(fn):
        raise SmeltError(f"{where}: fn must be a function (prediction, reference) -> score, not {fn!r}")
    if kind != "answer":
        raise SmeltError(f"{where}: kind {kind!r}: only \"answer\" metrics (the answer against its reference) can be "
                         "registered; an LLM's rating is --metric judge with --judge MODEL")
    if isinstance(pass_mark, bool) or not isinstance(pass_mark, int | float) or not 0 <= pass_mark <= 1:
        raise SmeltError(f"{where}: pass_mark {pass_mark!r}: use a number from 0 to 1")
    doc = (help or (fn.__doc__ or "").strip().split("\n")[0] or f"registered: {getattr(fn, '__qualname__', name)}")
    METRICS[name] = fn
    METRICS_DECLARED[name] = MetricInfo(kind, float(pass_mark), doc)
