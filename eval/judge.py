"""Scoring answers: deterministic metrics (f1, em) and an LLM judge, behind one small interface."""

from dataclasses import dataclass
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from smelt.errors import SmeltError
from smelt.eval.metrics import METRICS, PASS_F1
from smelt.signatures.judge import JudgeAnswer

METRIC_NAMES = ("f1", "em", "judge")
JUDGE_PASS = 0.7  # a judged answer must reach 7/10 to become a bootstrapped demo


@dataclass
class Metric:
    """A metric DSPy can call as ``metric(example, prediction, trace)`` that also explains its scores."""

    name: str
    pass_mark: float = PASS_F1  # the score a bootstrapped trace must reach to count as a success

    def score(self, example: dspy.Example, prediction: Any) -> tuple[float, dict]:
        raise NotImplementedError

    def __call__(self, example, prediction, trace=None, *args) -> float | bool:
        value, _ = self.score(example, prediction)
        if trace is not None:
            return value >= self.pass_mark
        return value


@dataclass
class AnswerMetric(Metric):
    def score(self, example, prediction):
        return float(METRICS[self.name](example, prediction)), {}


@dataclass
class JudgeMetric(Metric):
    judge: Any = None  # a smelt.lm.build.ResolvedLM
    pass_mark: float = JUDGE_PASS

    def __post_init__(self):
        self._rate = dspy.Predict(JudgeAnswer)

    def score(self, example, prediction):
        answer = str(getattr(prediction, "answer", "") or "").strip() if prediction is not None else ""
        if not answer:
            return 0.0, {"rating": 0, "rationale": "empty answer"}
        try:
            with self.judge.context():
                verdict = self._rate(question=example.question, reference=example.answer, answer=answer)
            rating = min(10, max(0, int(verdict.rating)))
        except (AdapterParseError, TypeError, ValueError):
            return 0.0, {"rating": None, "rationale": "the judge's output could not be parsed", "judge_error": True}
        return rating / 10, {"rating": rating, "rationale": verdict.rationale}


def metric_name(name: str | None, has_judge: bool) -> str:
    """Which metric --metric/--judge select (judge when a judge model is given, else f1), checked before any
    model is loaded."""
    name = name or ("judge" if has_judge else "f1")
    if name not in METRIC_NAMES:
        raise SmeltError(f"--metric {name!r}: use one of {', '.join(METRIC_NAMES)}")
    if name == "judge" and not has_judge:
        raise SmeltError(
            "--metric judge needs a judge model: pass --judge SPEC (e.g. --judge qwen2.5-7b, "
            "--judge openai/gpt-4o-mini, or --judge gemma-3-270m to try it offline)"
        )
    return name


def resolve_metric(name: str | None, judge=None) -> Metric:
    """--metric and --judge (a loaded ResolvedLM or None) into a Metric."""
    name = metric_name(name, judge is not None)
    return JudgeMetric("judge", judge=judge) if name == "judge" else AnswerMetric(name)
