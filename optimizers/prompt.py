"""Prompt optimizers: every DSPy 3.4 optimizer behind one call, with defaults sized for small data.

``compile_program(program, "bootstrap", trainset=..., metric=..., lm=...)`` returns the compiled program.
``OPTIMIZERS`` is the one table of them: the CLI's --optimizer choices and help, the sweep's space and the
checks are made from it. DSPy is imported inside each optimizer, so reading the table (``--help``) is instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dspy

from smelt.errors import SmeltError
from smelt.log import to_stderr
from smelt.optimizers.demo_diversity import diversify_demos, rule_applies
from smelt.optimizers.prompt_model import proposing_context
from smelt.optimizers.proposal_check import (
    Proposer,
    check_prompt_model,
    probe_copro,
    probe_gepa,
    probe_mipro,
    probe_simba,
    prompt_model_named,
    unreadable,
)
from smelt.optimizers.proposal_failures import ProposalTally, counting_failed_proposals

# The counts of CompileSettings and the option that sets each (a sweep's space sets num_candidates).
_COUNT_OPTIONS = {"max_demos": "--max-demos", "max_labeled_demos": "--max-labeled-demos",
                  "num_candidates": "num_candidates"}


@dataclass
class CompileSettings:
    seed: int = 0
    threads: int = 8
    max_demos: int = 2  # bootstrapped demos per predictor; a 270M model on a CPU pays for every demo token
    max_labeled_demos: int = 2
    num_candidates: int = 4  # candidate programs tried by random_search
    candidate_eval_size: int | None = None  # random_search scores candidates on this many train examples (None: all)
    labeled_in_order: bool = False  # labeled demos: the first of train (as interleave_labels ordered it), not a sample
    # No two demos with the same answer while train offers others (smelt.optimizers.demo_diversity); None: on for
    # tasks with labels, an answer format or short answers.
    diverse_demos: bool | None = None

    def __post_init__(self):
        for name, option in _COUNT_OPTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SmeltError(f"{option} must be an integer >= 0 (got {value!r})")


# What compile uses where neither the user nor the task says otherwise.
COMPILE_DEFAULTS = {"optimizer": "bootstrap", "max_demos": CompileSettings.max_demos,
                    "max_labeled_demos": CompileSettings.max_labeled_demos}


def _none(program, trainset, metric, lm, s: CompileSettings, prompt_lm):
    return program


def _labeled(program, trainset, metric, lm, s, prompt_lm):
    import dspy

    labeled = dspy.LabeledFewShot(k=s.max_labeled_demos)
    return labeled.compile(program, trainset=trainset, sample=not s.labeled_in_order)


def _bootstrap(program, trainset, metric, lm, s, prompt_lm):
    import dspy

    optimizer = dspy.BootstrapFewShot(
        metric=metric, max_bootstrapped_demos=s.max_demos, max_labeled_demos=s.max_labeled_demos,
        max_rounds=1, max_errors=len(trainset) + 1,
    )
    return optimizer.compile(program, trainset=trainset)


def _random_search(program, trainset, metric, lm, s, prompt_lm):
    import dspy

    optimizer = dspy.BootstrapFewShotWithRandomSearch(
        metric=metric, max_bootstrapped_demos=s.max_demos, max_labeled_demos=s.max_labeled_demos,
        num_candidate_programs=s.num_candidates, num_threads=s.threads, max_errors=len(trainset) + 1,
    )
    valset = trainset[: s.candidate_eval_size] if s.candidate_eval_size else None
    return optimizer.compile(program, trainset=trainset, valset=valset)


def _mipro(program, trainset, metric, lm, s, prompt_lm):
    import dspy

    optimizer = dspy.MIPROv2(
        metric=metric, prompt_model=prompt_lm.lm, task_model=lm.lm, auto="light", num_threads=s.threads, seed=s.seed,
        max_bootstrapped_demos=s.max_demos, max_labeled_demos=s.max_labeled_demos, max_errors=len(trainset) + 1,
        verbose=False,
    )
    return optimizer.compile(program, trainset=trainset, seed=s.seed)


def _copro(program, trainset, metric, lm, s, prompt_lm):
    import dspy

    optimizer = dspy.COPRO(prompt_model=prompt_lm.lm, metric=metric, breadth=3, depth=1)
    eval_kwargs = {"num_threads": s.threads, "display_progress": True}
    return optimizer.compile(program, trainset=trainset, eval_kwargs=eval_kwargs)


def _simba(program, trainset, metric, lm, s, prompt_lm):
    import dspy

    optimizer = dspy.SIMBA(
        metric=metric, bsize=min(8, len(trainset)), num_candidates=3, max_steps=2, max_demos=s.max_demos,
        prompt_model=prompt_lm.lm, num_threads=s.threads,
    )
    return optimizer.compile(program, trainset=trainset, seed=s.seed)


def _gepa(program, trainset, metric, lm, s, prompt_lm):
    import dspy

    def metric_with_feedback(gold, pred, trace=None, pred_name=None, pred_trace=None):
        reference = gold.get(metric.task.answer_field)
        malformed = metric.task.malformed(pred)
        if malformed:
            wanted = ", ".join(f"{name}: {metric.task.formats[name].describe()}" for name in malformed)
            return dspy.Prediction(score=0.0, feedback=f"malformed answer (expected {wanted}); the reference is "
                                                       f"{reference!r}")
        value, detail = metric.score(gold, pred)
        feedback = detail.get("rationale") or f"{metric.name} {value:.2f}; the reference is {reference!r}"
        return dspy.Prediction(score=value, feedback=feedback)

    optimizer = dspy.GEPA(
        metric=metric_with_feedback, auto="light", reflection_lm=prompt_lm.lm, num_threads=s.threads, seed=s.seed,
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


@dataclass(frozen=True)
class Optimizer:
    compile: Callable[..., Any]  # (program, trainset, metric, lm, settings, prompt_lm) -> the compiled program
    min_train: int  # train examples it cannot run without (DSPy 3.4.1; see OPTIMIZERS)
    help: str  # what it does, for --optimizer's help
    proposer: Proposer | None = None  # how it asks its prompt model for instructions (None: it writes none)


# The optimizers, and the fewest train examples each runs on, as DSPy 3.4.1 has it: BootstrapFewShot loops over
# train (an empty one fails), random_search bootstraps too, COPRO and SIMBA score on train, GEPA asserts a
# non-empty train, MIPROv2 splits train into its own train and validation sets (2 at least); labeled would
# only return the program unchanged.
# Those that write instructions check their prompt model first (smelt.optimizers.proposal_check). A model that
# cannot write one stops gepa and copro, which do nothing else (GEPA would end where it started; COPRO stops at
# its first unreadable proposal); mipro and simba are warned and go on with the demos they also search.
OPTIMIZERS: dict[str, Optimizer] = {
    "none": Optimizer(_none, 0, "the program as written"),
    "labeled": Optimizer(_labeled, 1, "LabeledFewShot: train examples as demos"),
    "bootstrap": Optimizer(_bootstrap, 1, "BootstrapFewShot: the model's own passing answers as demos"),
    "random_search": Optimizer(_random_search, 1, "BootstrapFewShotWithRandomSearch: the best of several demo sets"),
    "mipro": Optimizer(_mipro, 2, "MIPROv2 (light): instructions and demos proposed and searched",
                       Proposer(probe_mipro, refuses=False, without="its demo sets and the program's own instruction")),
    "copro": Optimizer(_copro, 1, "COPRO: instructions proposed and refined", Proposer(probe_copro, refuses=True)),
    "simba": Optimizer(_simba, 1, "SIMBA: rules and demos from the hardest examples",
                       Proposer(probe_simba, refuses=False, without="demos", failures="rules")),
    "gepa": Optimizer(_gepa, 1, "GEPA: the model reflects on its failures to rewrite instructions",
                      Proposer(probe_gepa, refuses=True, failures="reflection")),
}


def optimizers_help() -> str:
    """--optimizer's help, one clause an optimizer."""
    return "; ".join(f"{name}: {optimizer.help}" for name, optimizer in OPTIMIZERS.items())


def check_optimizer(name: str) -> None:
    if name not in OPTIMIZERS:
        raise SmeltError(f"--optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")


def optimizers_for(train_size: int) -> list[str]:
    """The optimizers that can run on ``train_size`` train examples."""
    return [name for name, optimizer in OPTIMIZERS.items() if optimizer.min_train <= train_size]


def check_train_size(optimizer: str, train_size: int, *, max_train: int | None = None,
                     instead: str | None = None) -> None:
    """Refuse, before any model loads, an optimizer that cannot run on ``train_size`` train examples.

    ``max_train`` is --max-train, named as the cause where it leaves too few; ``instead`` is the other way out, in
    the caller's words (default: the --optimizer values that fit)."""
    check_optimizer(optimizer)
    minimum = OPTIMIZERS[optimizer].min_train
    if train_size >= minimum:
        return
    if instead is None:
        fits = optimizers_for(train_size)
        instead = f"use --optimizer {fits[0]}" if len(fits) == 1 else f"use another --optimizer: {', '.join(fits)}"
    needs = f"optimizer {optimizer} needs at least {minimum} train example{'s' if minimum > 1 else ''}"
    if max_train is not None and max_train < minimum:
        raise SmeltError(f"--max-train {max_train}: {needs}; raise --max-train or {instead}")
    split = "the train split is empty" if train_size == 0 else \
        f"the train split has only {train_size} example{'s' if train_size > 1 else ''}"
    raise SmeltError(f"{split}: {needs}; give more train data (--data FILE, or --train FILE) or {instead}")


def writes_instructions(optimizer: str) -> bool:
    """Whether ``optimizer`` asks a prompt model for instructions (so --prompt-lm applies to it)."""
    return OPTIMIZERS[optimizer].proposer is not None


def check_prompt_lm_use(optimizer: str, prompt_lm: str | None) -> None:
    """--prompt-lm only with an optimizer that writes instructions: elsewhere it would change nothing."""
    if prompt_lm and not writes_instructions(optimizer):
        users = ", ".join(name for name in OPTIMIZERS if writes_instructions(name))
        raise SmeltError(f"--prompt-lm {prompt_lm}: --optimizer {optimizer} writes no instructions, so it has no "
                         f"prompt model; drop --prompt-lm, or use an optimizer that writes them ({users})")


def check_proposer(optimizer: str, program, trainset: list, *, lm, prompt_lm=None,
                   log: Callable[[str], None] | None = None) -> None:
    """Before an optimizer that writes instructions runs: one call asking its prompt model (``prompt_lm``, default
    ``lm``) for a proposal as the optimizer would (``smelt.optimizers.proposal_check``). One that cannot write it
    stops gepa and copro (SmeltError) and is warned about with mipro and simba."""
    proposer = OPTIMIZERS[optimizer].proposer
    if proposer is None or not trainset:
        return
    with proposing_context(lm, prompt_lm):
        check_prompt_model(optimizer, proposer, program, trainset, lm, prompt_lm, log=log or to_stderr)


def compile_program(program: dspy.Module, optimizer: str, *, trainset, metric, lm, settings: CompileSettings,
                    log: Callable[[str], None] | None = None, prompt_lm=None, tally: ProposalTally | None = None,
                    checked: bool = False):
    """Run ``optimizer`` on ``program`` over ``trainset`` with ``lm`` (a ResolvedLM); returns the compiled copy, its
    demos with distinct answers where ``settings.diverse_demos`` (or the task's default) asks for it.

    An optimizer that writes instructions asks ``prompt_lm`` for them (default: ``lm``), after ``check_proposer``
    (unless the caller ``checked`` already); its failed proposals are counted into ``tally`` and said in one line
    at the end, instead of a traceback each."""
    check_train_size(optimizer, len(trainset))
    task = getattr(metric, "task", None)
    diverse = settings.diverse_demos
    if diverse is None:
        diverse = task is not None and rule_applies(task, trainset)
    if not checked:
        check_proposer(optimizer, program, trainset, lm=lm, prompt_lm=prompt_lm, log=log)
    with proposing_context(lm, prompt_lm):
        with counting_failed_proposals(optimizer) as counted:
            compiled = _compiled(optimizer, program, trainset, metric, lm, settings, prompt_lm)
        if diverse:
            diversify_demos(compiled, trainset, metric, log=log)
    proposer = OPTIMIZERS[optimizer].proposer
    if proposer is not None and counted.failed:
        (log or to_stderr)(f"[smelt] {optimizer}: {proposer.failures} failed {counted.failed} of {counted.asked} "
                           f"on the prompt model {prompt_model_named(lm, prompt_lm)}; pass --prompt-lm SPEC with a "
                           "stronger model")
    if tally is not None:
        tally.asked, tally.failed, tally.counted = counted.asked, counted.failed, counted.counted
    return compiled


def _compiled(optimizer: str, program, trainset, metric, lm, settings: CompileSettings, prompt_lm):
    """The optimizer's run; a proposal it could not read and does not survive (mipro, copro) as one line."""
    from dspy.utils.exceptions import AdapterParseError

    try:
        return OPTIMIZERS[optimizer].compile(program.deepcopy(), trainset, metric, lm, settings, prompt_lm or lm)
    except AdapterParseError as exc:
        raise SmeltError(f"--optimizer {optimizer}: the prompt model {prompt_model_named(lm, prompt_lm)} wrote a "
                         f"proposal DSPy could not read ({unreadable(exc)}); pass --prompt-lm SPEC with a stronger "
                         "model") from None


def check_task_defaults(task) -> None:
    """A task's own compile defaults (a task file's [compile] table) name an optimizer that exists."""
    name = task.compile_defaults.get("optimizer")
    if name is not None and name not in OPTIMIZERS:
        raise SmeltError(f"{task.source}: compile.optimizer: {name!r} is not one of {', '.join(OPTIMIZERS)}")
