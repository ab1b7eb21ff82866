"""Scoring a task's outputs: deterministic metrics (f1, em, accuracy) and an LLM judge, behind one interface.

A Metric reads field names from its task: the graded field is the task's answer field (its signature's
first output); the judge sees the task's inputs, the reference and the output.
"""

from dataclasses import dataclass
from typing import Any

import dspy

from smelt.errors import SmeltError
from smelt.eval.fact_matching import invented_in_answer
from smelt.eval.jury import ask, jury_rating, rate_criteria
from smelt.eval.metrics import METRICS, PASS_F1
from smelt.programs.metric_names import GROUNDED, METRIC_NAMES, METRICS_DECLARED, split_grounded
from smelt.signatures.judge import JudgeOutput
from smelt.signatures.synthetic import JudgeUnreferenced

JUDGE_PASS = METRICS_DECLARED["judge"].pass_mark  # a judged answer must reach 7/10 to become a demo
JUDGE_INPUT_CHARS = 2000  # each input is cut to this for the judge: a whole document adds cost, not judgment
JUDGE_SOURCE_CHARS = 6000  # without a reference the judge checks the output against its source: more of it


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
        # An answer without its declared format (a date that is not YYYY-MM-DD) is never a success, whatever the
        # score: an optimizer must not learn from it.
        value = 0.0 if self.task.malformed(prediction) else self.score(example, prediction)[0]
        if trace is not None:
            return value >= self.pass_mark
        return value


@dataclass
class AnswerMetric(Metric):
    """f1, em, accuracy or fact of the answer field against the example's reference (smelt.eval.metrics)."""

    def score(self, example, prediction):
        predicted = self.predicted(prediction)
        if predicted is None:
            return 0.0, {}
        reference = str(example.get(self.task.answer_field, ""))
        if self.name == "accuracy":
            return METRICS["accuracy"](predicted, reference, self.task.answer_labels), {}
        return float(METRICS[self.name](predicted, reference)), {}


@dataclass
class GroundedMetric(Metric):
    """NAME+grounded: the ``base`` metric's score, but 0 for an answer stating a fact (number, date, amount, time,
    phone, e-mail, URL) that its source does not hold (smelt.eval.fact_matching; the source: ``task.source_of``), so an
    optimizer learns not to invent. The base metric is not asked then (a judge is not called)."""

    base: Metric | None = None

    @property
    def judge(self):  # the evaluation loop names a failing judge
        return getattr(self.base, "judge", None)

    def score(self, example, prediction):
        made_up = invented_in_answer(self.task, example, prediction)
        if made_up:
            return 0.0, {"invented": made_up,
                         "rationale": "the answer states what its source does not: " + ", ".join(made_up)}
        return self.base.score(example, prediction)


@dataclass
class JudgeMetric(Metric):
    """An LLM judge's 0-10 rating as a 0-1 score: one judge or a jury (their mean), on the whole rubric or on
    --criteria items (their mean); see ``eval.jury``. An example without a reference (synthetic inputs) is
    rated against the task's source text instead."""

    judge: Any = None  # a smelt.lm.build.ResolvedLM, or a list of them: a jury
    criteria: dict[str, str] | None = None  # rubric items, name -> what it asks (--criteria FILE)
    pass_mark: float = JUDGE_PASS

    @property
    def judges(self) -> list:
        return list(self.judge) if isinstance(self.judge, list | tuple) else [self.judge]

    def score(self, example, prediction):
        fields = self.task.output_fields
        output = render_fields({name: prediction.get(name) for name in fields} if prediction is not None else {})
        if not (self.predicted(prediction) or "").strip():
            return 0.0, {"rating": 0, "rationale": "empty answer"}
        # A reply without a rating scores 0 and is flagged (judge_error); a call that fails (rate limit, timeout,
        # server down, after DSPy's retries) raises: the evaluation loop records it on the example.
        verdicts = {}
        for judge in self.judges:
            spec = getattr(getattr(judge, "spec", None), "raw", "judge")
            name = spec if spec not in verdicts else f"{spec}#{len(verdicts) + 1}"
            verdicts[name] = self._verdict(judge, example, prediction, output)
        rating, detail = jury_rating(verdicts)
        if rating is None:
            return 0.0, detail | {"rationale": "the judge's output could not be parsed", "judge_error": True}
        return rating / 10, detail

    def _verdict(self, judge, example, prediction, output: str):
        inputs = render_fields({name: example.get(name) for name in self.task.input_fields}, JUDGE_INPUT_CHARS)
        reference = render_fields({name: example.get(name) for name in self.task.output_fields})
        if not reference:  # nothing to compare with: is the output right and supported by its source?
            source = getattr(self.task, "source_text", None)
            seen = source(example, prediction) if source else render_fields(
                {name: example.get(name) for name in self.task.input_fields}, JUDGE_SOURCE_CHARS)
            return ask(judge, JudgeUnreferenced, task_inputs=seen[:JUDGE_SOURCE_CHARS], output=output)
        if self.criteria:
            return rate_criteria(judge, self.criteria, task_inputs=inputs, reference=reference, output=output)
        return ask(judge, JudgeOutput, task_inputs=inputs, reference=reference, output=output)


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
    before any model is loaded: one of METRIC_NAMES, or one of them + "+grounded" (e.g. f1+grounded)."""
    name = name or ("judge" if has_judge else (task.default_metric if task is not None else "f1"))
    base, _ = split_grounded(name)
    if base not in METRIC_NAMES:
        raise SmeltError(f"--metric {name!r}: use one of {', '.join(METRIC_NAMES)}, or NAME{GROUNDED} (e.g. "
                         f"f1{GROUNDED}: an answer stating a number, date, URL... its source does not hold scores 0)")
    if base == "judge" and not has_judge:
        raise SmeltError(
            f"--metric {name} needs a judge model: pass --judge SPEC (e.g. --judge qwen2.5-7b, "
            "--judge openai/gpt-4o-mini, or --judge gemma-3-270m to try it offline)"
        )
    return name


def resolve_metric(name: str | None, task, judge=None, **judge_options) -> Metric:
    """--metric and --judge (a loaded ResolvedLM or None) into the task's Metric; ``judge_options`` go to the
    JudgeMetric. NAME+grounded wraps NAME's metric in a GroundedMetric."""
    name = metric_name(name, judge is not None, task)
    base_name, grounded = split_grounded(name)
    if base_name == "judge":
        base = JudgeMetric("judge", task, judge=judge, **judge_options)
    else:
        base = AnswerMetric(base_name, task, pass_mark=METRICS_DECLARED[base_name].pass_mark)
    return GroundedMetric(name, task, pass_mark=base.pass_mark, base=base) if grounded else base
