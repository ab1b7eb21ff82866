"""Scoring a task's outputs: deterministic metrics (f1, em, accuracy) and an LLM judge, behind one interface.

A Metric reads field names from its task: the graded field is the task's answer field (its signature's
first output); the judge sees the task's inputs, the reference and the output.
"""

from dataclasses import dataclass
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from smelt.errors import SmeltError
from smelt.eval.metrics import METRICS, PASS_F1
from smelt.signatures.judge import JudgeOutput

METRIC_NAMES = ("f1", "em", "accuracy", "judge")
JUDGE_PASS = 0.7  # a judged answer must reach 7/10 to become a bootstrapped demo
JUDGE_INPUT_CHARS = 2000  # each input is cut to this for the judge: a whole document adds cost, not judgment


@dataclass
class Metric:
    """A metric DSPy can call as ``metric(example, prediction, trace)`` that also explains its scores."""

    name: str
    task: Any  # smelt.programs.task.Task
    pass_mark: float = PASS_F1  # the score a bootstrapped trace must reach to count as a success

    def score(self, example: dspy.Example, prediction: Any) -> tuple[float, dict]:
        raise NotImplementedError

    def predicted(self, prediction: Any) -> str | None:
        value = prediction.get(self.task.answer_field) if prediction is not None else None
        return None if value is None else str(value)

    def __call__(self, example, prediction, trace=None, *args) -> float | bool:
        value, _ = self.score(example, prediction)
        if trace is not None:
            return value >= self.pass_mark
        return value


@dataclass
class AnswerMetric(Metric):
    """f1, em or accuracy of the answer field against the example's reference."""

    def score(self, example, prediction):
        predicted = self.predicted(prediction)
        if predicted is None:
            return 0.0, {}
        reference = str(example.get(self.task.answer_field, ""))
        if self.name == "accuracy":
            return METRICS["accuracy"](predicted, reference, self.task.answer_labels), {}
        return float(METRICS[self.name](predicted, reference)), {}


@dataclass
class JudgeMetric(Metric):
    judge: Any = None  # a smelt.lm.build.ResolvedLM
    pass_mark: float = JUDGE_PASS

    def __post_init__(self):
        self._rate = dspy.Predict(JudgeOutput)

    def score(self, example, prediction):
        fields = self.task.output_fields
        output = render_fields({name: prediction.get(name) for name in fields} if prediction is not None else {})
        if not (self.predicted(prediction) or "").strip():
            return 0.0, {"rating": 0, "rationale": "empty answer"}
        inputs = render_fields({name: example.get(name) for name in self.task.input_fields}, JUDGE_INPUT_CHARS)
        reference = render_fields({name: example.get(name) for name in fields})
        # A reply that does not parse scores 0 and is flagged (judge_error); a call that fails (rate limit, timeout,
        # server down, after DSPy's retries) raises: the evaluation loop records it on the example.
        try:
            with self.judge.context():
                verdict = self._rate(task_inputs=inputs, reference=reference, output=output)
            rating = min(10, max(0, int(verdict.rating)))
        except (AdapterParseError, TypeError, ValueError) as exc:
            detail = {"rating": None, "rationale": "the judge's output could not be parsed", "judge_error": True}
            if isinstance(exc, AdapterParseError) and exc.lm_response is not None:
                detail["reply"] = str(exc.lm_response)[:300]
            return 0.0, detail
        return rating / 10, {"rating": rating, "rationale": verdict.rationale}


def render_fields(values: dict[str, Any], limit: int | None = None) -> str:
    """One field's value as is; several as `name: value` lines (each cut to ``limit`` characters)."""
    present = {name: str(value) for name, value in values.items() if value is not None}
    if limit:
        present = {name: value if len(value) <= limit else value[:limit] + " ..." for name, value in present.items()}
    if len(present) == 1:
        return next(iter(present.values())).strip()
    return "\n".join(f"{name}: {value.strip()}" for name, value in present.items())


def metric_name(name: str | None, has_judge: bool, task=None) -> str:
    """Which metric --metric/--judge select (judge when a judge model is given, else the task's default), checked
    before any model is loaded."""
    name = name or ("judge" if has_judge else (task.default_metric if task is not None else "f1"))
    if name not in METRIC_NAMES:
        raise SmeltError(f"--metric {name!r}: use one of {', '.join(METRIC_NAMES)}")
    if name == "judge" and not has_judge:
        raise SmeltError(
            "--metric judge needs a judge model: pass --judge SPEC (e.g. --judge qwen2.5-7b, "
            "--judge openai/gpt-4o-mini, or --judge gemma-3-270m to try it offline)"
        )
    return name


def resolve_metric(name: str | None, task, judge=None) -> Metric:
    """--metric and --judge (a loaded ResolvedLM or None) into the task's Metric."""
    name = metric_name(name, judge is not None, task)
    if name == "judge":
        return JudgeMetric("judge", task, judge=judge)
    return AnswerMetric(name, task, pass_mark=1.0 if name in ("em", "accuracy") else PASS_F1)
