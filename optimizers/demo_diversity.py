"""Demos with distinct answers: after a prompt optimizer has chosen a predictor's demos, no two of them give the same
answer while train offers examples with other answers.

Why: a small model copies the answer its demos share. With two bootstrapped demos both answering 2026-04-30, the
270M model answered 2026-04-30 to nearly every notice of a date task; with two demos of one department, a routing
task answered that department to everything. The rule is on by default where answers can repeat: a task with
labels, with a declared answer format, or whose train answers are short (`rule_applies`); compile's
``--no-diverse-demos`` turns it off. Measured: docs/benchmarks.md, "Demos with distinct answers".

A repeated demo is replaced, in its place, by the first train example (in compile's train order) whose answer no
demo gives yet: a bootstrapped demo by a new bootstrapped one (the program, without the repeated demo, answers
that example and passes the metric; ``BOOTSTRAP_TRIES`` examples at most), else, as a labeled demo, by the example
itself. Answers are compared as labels are (case, width, spaces, _ and - aside).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from smelt.programs.text import label_key

SHORT_ANSWER_CHARS = 60  # a task whose median train answer is at most this long has short answers
BOOTSTRAP_TRIES = 6  # train examples the program answers to find a new bootstrapped demo, before a labeled one


def rule_applies(task, trainset: list) -> bool:
    """Whether the rule is on by default for ``task``: labels, an answer format, or short train answers."""
    if task.answer_labels or task.answer_field in task.formats:
        return True
    lengths = [len(str(ex.get(task.answer_field))) for ex in trainset if ex.get(task.answer_field) is not None]
    return bool(lengths) and statistics.median(lengths) <= SHORT_ANSWER_CHARS


def answer_key(value: Any) -> str:
    return label_key(str(value))


def diversify_demos(program, trainset: list, metric: Callable, *, log: Callable[[str], None] | None = None) -> int:
    """Replace, in each predictor of ``program`` (in place), every demo repeating an earlier demo's answer where
    ``trainset`` (examples as the predictor sees them) offers another answer. Returns the number replaced."""
    replaced = 0
    for name, predictor in program.named_predictors():
        field = next(name for name in predictor.signature.output_fields if name != "reasoning")  # CoT's comes first
        demos = list(predictor.demos)
        for index, demo in enumerate(demos):
            earlier = {answer_key(d.get(field)) for d in demos[:index] if d.get(field) is not None}
            if demo.get(field) is None or answer_key(demo.get(field)) not in earlier:
                continue
            taken = {answer_key(d.get(field)) for d in demos if d.get(field) is not None}
            candidates = [ex for ex in trainset if ex.get(field) is not None and answer_key(ex.get(field)) not in taken
                          and not any(_same_inputs(ex, d) for d in demos)]
            if not candidates:
                continue  # train offers no other answer: the repeat stays
            new = _bootstrapped(program, predictor, demos, index, candidates, field, metric) \
                if demo.get("augmented") else None
            demos[index] = new or candidates[0]
            replaced += 1
            if log:
                kind = "a bootstrapped" if new else "a labeled"
                log(f"[smelt] {name}: demo {index + 1} repeated the answer {str(demo.get(field))!r}; replaced by "
                    f"{kind} demo answering {str(demos[index].get(field))!r} (--no-diverse-demos keeps repeats)")
        predictor.demos = demos
    return replaced


def _same_inputs(example, demo) -> bool:
    """Whether ``demo`` shows ``example`` (the same value of each of its inputs)."""
    return all(example.get(key) == demo.get(key) for key in example.inputs().keys())


def _bootstrapped(program, predictor, demos: list, index: int, candidates: list, field: str, metric):
    """A new bootstrapped demo for ``predictor`` from one of the first ``BOOTSTRAP_TRIES`` candidates: the
    predictor's own inputs and outputs when the program, without the repeated demo, passes the metric on it with
    an answer no demo gives yet; None when none does."""
    import dspy

    taken = {answer_key(d.get(field)) for i, d in enumerate(demos) if i != index and d.get(field) is not None}
    saved = predictor.demos
    predictor.demos = demos[:index] + demos[index + 1:]
    try:
        for example in candidates[:BOOTSTRAP_TRIES]:
            with dspy.context(trace=[]):
                try:
                    prediction = program(**example.inputs())
                except Exception:  # noqa: BLE001 - an answer that fails to parse is no demo; try the next example
                    continue
                trace = list(dspy.settings.trace)
            steps = [(inputs, outputs) for step, inputs, outputs in trace if step is predictor]
            if not steps or not metric(example, prediction, trace):
                continue
            inputs, outputs = steps[-1]
            if outputs.get(field) is None or answer_key(outputs.get(field)) in taken:
                continue
            return dspy.Example(augmented=True, **inputs, **outputs)
    finally:
        predictor.demos = saved
    return None
