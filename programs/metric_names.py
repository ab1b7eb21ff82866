"""The metrics a task, a task file or --metric may name: the one table where a metric is declared (name, kind,
pass mark, help), checked before anything loads. What each computes lives in smelt.eval, which programs/ may not
import (metrics.py maps each answer metric to its function, same keys; judge.py: the judge) and which reads its pass
mark from here; the CLI's --metric help is made from it. ``smelt.register_metric`` adds one to both."""

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    kind: str  # "answer": compared with the reference; "judge": an LLM rates it 0-10
    pass_mark: float  # the score a bootstrapped trace must reach to become a demo
    help: str


METRICS_DECLARED: dict[str, MetricInfo] = {
    "f1": MetricInfo("answer", 0.5, "token overlap with the reference (characters for Japanese, words otherwise)"),
    "em": MetricInfo("answer", 1.0, "the answer equals the reference after normalisation"),
    "accuracy": MetricInfo("answer", 1.0, "a label answer names the reference label (case, width, _ and - ignored)"),
    "fact": MetricInfo("answer", 0.5, "F1, but 0 when the answer lacks a number, date, amount, time, phone, e-mail "
                                      "or URL of the reference"),
    "judge": MetricInfo("judge", 0.7, "an LLM (--judge) rates the answer 0-10 seeing the inputs and the reference"),
}
# and each of them + GROUNDED; a live view, so a metric registered later (smelt.eval.metrics.register_metric) is
# among them wherever it was imported
METRIC_NAMES = METRICS_DECLARED.keys()
GROUNDED = "+grounded"  # f1+grounded, judge+grounded, ...: an answer with an invented fact scores 0


def split_grounded(name: str) -> tuple[str, bool]:
    """'f1+grounded' -> ('f1', True); 'f1' -> ('f1', False)."""
    return (name.removesuffix(GROUNDED), True) if name.endswith(GROUNDED) else (name, False)


def metrics_help() -> str:
    """--metric's help, one clause a metric."""
    return "; ".join(f"{name}: {info.help}" for name, info in METRICS_DECLARED.items()) + \
        f"; NAME{GROUNDED}: NAME's score, but 0 when the answer states such a fact that its source does not"
