"""Prompt optimizers: every DSPy 3.4 optimizer behind one call, with defaults sized for small data.

``compile_program(program, "bootstrap", trainset=..., metric=..., lm=...)`` returns the compiled program.
"""

from collections.abc import Callable
from dataclasses import dataclass

import dspy

from smelt.errors import SmeltError


@dataclass
class CompileSettings:
    seed: int = 0
    threads: int = 8
    max_demos: int = 2  # bootstrapped demos per predictor; a 270M model on a CPU pays for every demo token
    max_labeled_demos: int = 2
    num_candidates: int = 4  # candidate programs tried by random_search
    candidate_eval_size: int | None = None  # random_search scores candidates on this many train examples (None: all)
    labeled_in_order: bool = False  # labeled demos: the first of train (as interleave_labels ordered it), not a sample


# What compile uses where neither the user nor the task says otherwise.
COMPILE_DEFAULTS = {"optimizer": "bootstrap", "max_demos": CompileSettings.max_demos,
                    "max_labeled_demos": CompileSettings.max_labeled_demos}


def _none(program, trainset, metric, lm, s: CompileSettings):
    return program


def _labeled(program, trainset, metric, lm, s):
    labeled = dspy.LabeledFewShot(k=s.max_labeled_demos)
    return labeled.compile(program, trainset=trainset, sample=not s.labeled_in_order)


def _bootstrap(program, trainset, metric, lm, s):
    optimizer = dspy.BootstrapFewShot(
        metric=metric, max_bootstrapped_demos=s.max_demos, max_labeled_demos=s.max_labeled_demos,
        max_rounds=1, max_errors=len(trainset) + 1,
    )
    return optimizer.compile(program, trainset=trainset)


def _random_search(program, trainset, metric, lm, s):
    optimizer = dspy.BootstrapFewShotWithRandomSearch(
        metric=metric, max_bootstrapped_demos=s.max_demos, max_labeled_demos=s.max_labeled_demos,
        num_candidate_programs=s.num_candidates, num_threads=s.threads, max_errors=len(trainset) + 1,
    )
    valset = trainset[: s.candidate_eval_size] if s.candidate_eval_size else None
    return optimizer.compile(program, trainset=trainset, valset=valset)


def _mipro(program, trainset, metric, lm, s):
    optimizer = dspy.MIPROv2(
        metric=metric, prompt_model=lm.lm, task_model=lm.lm, auto="light", num_threads=s.threads, seed=s.seed,
        max_bootstrapped_demos=s.max_demos, max_labeled_demos=s.max_labeled_demos, max_errors=len(trainset) + 1,
        verbose=False,
    )
    return optimizer.compile(program, trainset=trainset, seed=s.seed)


def _copro(program, trainset, metric, lm, s):
    optimizer = dspy.COPRO(prompt_model=lm.lm, metric=metric, breadth=3, depth=1)
    eval_kwargs = {"num_threads": s.threads, "display_progress": True}
    return optimizer.compile(program, trainset=trainset, eval_kwargs=eval_kwargs)


def _simba(program, trainset, metric, lm, s):
    optimizer = dspy.SIMBA(
        metric=metric, bsize=min(8, len(trainset)), num_candidates=3, max_steps=2, max_demos=s.max_demos,
        num_threads=s.threads,
    )
    return optimizer.compile(program, trainset=trainset, seed=s.seed)


def _gepa(program, trainset, metric, lm, s):
    def metric_with_feedback(gold, pred, trace=None, pred_name=None, pred_trace=None):
        value, detail = metric.score(gold, pred)
        reference = gold.get(metric.task.answer_field)
        feedback = detail.get("rationale") or f"{metric.name} {value:.2f}; the reference is {reference!r}"
        return dspy.Prediction(score=value, feedback=feedback)

    optimizer = dspy.GEPA(
        metric=metric_with_feedback, auto="light", reflection_lm=lm.lm, num_threads=s.threads, seed=s.seed,
        reflection_minibatch_size=3,
    )
    return optimizer.compile(program, trainset=trainset)


def interleave_labels(examples: list, field: str, *, seed: int = 0) -> list:
    """The examples reordered so that labels take turns (one of each, then the next of each, ...), each label's
    examples shuffled by ``seed``: a label task's first k demos then cover k labels."""
    import random

    by_label: dict[str, list] = {}
    for example in examples:
        by_label.setdefault(str(example.get(field)), []).append(example)
    rng = random.Random(seed)
    for group in by_label.values():
        rng.shuffle(group)
    ordered = []
    for turn in range(max((len(group) for group in by_label.values()), default=0)):
        ordered += [group[turn] for group in by_label.values() if turn < len(group)]
    return ordered


OPTIMIZERS: dict[str, Callable] = {
    "none": _none,
    "labeled": _labeled,
    "bootstrap": _bootstrap,
    "random_search": _random_search,
    "mipro": _mipro,
    "copro": _copro,
    "simba": _simba,
    "gepa": _gepa,
}


def compile_program(program: dspy.Module, optimizer: str, *, trainset, metric, lm, settings: CompileSettings):
    """Run ``optimizer`` on ``program`` over ``trainset`` with ``lm`` (a ResolvedLM); returns the compiled copy."""
    if optimizer not in OPTIMIZERS:
        raise SmeltError(f"--optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if not trainset and optimizer != "none":
        raise SmeltError(f"--optimizer {optimizer}: the train split is empty; give train data or use --optimizer none")
    with lm.context():
        return OPTIMIZERS[optimizer](program.deepcopy(), trainset, metric, lm, settings)
