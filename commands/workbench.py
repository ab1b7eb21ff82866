"""The setup every scoring command shares, written once: DSPy's settings, the model options checked, the task's
data, the judge and the metric. ``compile``, ``distill``, ``eval`` and both sweep stages start from ``prepare``;
each then loads the models of its own recipe (the program's model, a teacher, a student); ``compile`` and a
sweep's compile stage also the prompt model of --prompt-lm (``Workbench.prompt_model``).

The task is resolved once, at the command's edge, and handed in as a ``Task``. The judge and the metric load on
first use: a sweep's coordinating process needs neither while its workers run, and ``distill`` loads its teacher
first.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from smelt.commands.common import (
    DataOptions,
    RunOptions,
    check_model_options,
    load_judge,
    load_task_data,
    scoring_metric,
)
from smelt.lifecycle.destinations import RECORDED
from smelt.lm import lm_for_spec
from smelt.lm.dspy_settings import configure_dspy
from smelt.lm.specs import parse_spec
from smelt.programs.datasets import Splits
from smelt.programs.registry import Task


@dataclass
class Workbench:
    """What a command scores with: its options, task and data splits; the judge and the metric once asked for."""

    options: RunOptions
    task: Task
    splits: Splits
    metric_name: str | None = None  # None: --metric, else the task's default (with --judge: judge)
    judge_loader: Callable[[], object] | None = None  # None: --judge (a jury for several), on --api-base
    prompt_lm: str | None = None  # --prompt-lm: the model that writes an optimizer's instructions

    @cached_property
    def judge(self):
        """The judge model (a list for a jury), or None."""
        return self.judge_loader() if self.judge_loader is not None else load_judge(self.options)

    @cached_property
    def prompt_model(self):
        """The model of --prompt-lm, on --api-base as a judge is (a run's recorded server only once the user said
        so: ``smelt.lifecycle.destinations``); None without --prompt-lm (the program's own model proposes)."""
        if not self.prompt_lm:
            return None
        given = None if self.options.api_base == RECORDED else self.options.api_base
        return lm_for_spec(self.prompt_lm, option="--prompt-lm", device=self.options.device, api_base=given,
                           cache=self.options.cache)

    @cached_property
    def metric(self):
        return scoring_metric(self.options, self.task, self.judge, self.metric_name)


def prepare(options: RunOptions, task: Task, *, lm: str | None = None, metric: str | None = None,
            judge: Callable[[], object] | None = None, data: DataOptions | None = None,
            check: bool = True, prompt_lm: str | None = None) -> Workbench:
    """DSPy configured for ``options.threads``; --lm (``lm``), --prompt-lm (``prompt_lm``), --judge, --metric and
    --device checked (unless ``check`` is False: ``eval`` takes the run's recorded ones); the splits loaded from
    ``data`` (default --data/--train/--dev/--test, else the task's own). Nothing is loaded that a mistake in them
    would waste."""
    configure_dspy(options.threads)
    if check:
        check_model_options(lm, options.judge, metric or options.metric, options.device, task)
    if prompt_lm:
        parse_spec(prompt_lm, "--prompt-lm")
    splits = load_task_data(task, data or options.data, options.seed)
    return Workbench(options, task, splits, metric, judge, prompt_lm)
