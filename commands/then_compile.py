"""``distill --then-compile``: prompt after weights, one round of DSPy's BetterTogether idea.

Once the adapter is trained, the distilled student's own prompt is compiled: bootstrap on train, with the
distilled student (base model + adapter, its lean prompt) as the program's model, so its demos are the answers
the student itself gets right. The compiled program is kept only where dev improves over the distilled student
alone; dev alone decides, and test is scored for the program kept. Kept, it is the run's program.json, with
its demos, and ``eval``, ``run`` and ``serve`` answer with it on the same adapter and prompt settings.

A distill run and a sweep's distill trial (the ``then_compile`` knob) both go through ``compile_distilled``.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import dspy

from smelt.commands.compile import compile_into
from smelt.optimizers.prompt import COMPILE_DEFAULTS, CompileSettings

DISTILLED = "distilled student"
COMPILED = "distilled+compiled"
OPTIMIZER = "bootstrap"  # demos only: the student's prompt carries no instructions for an optimizer to rewrite
CANDIDATE_DIR = "compiled_student"  # the compiled candidate's program.json, kept or not (reused on --resume)
CANDIDATE_DEV = "compiled.dev"  # its dev records, eval/compiled.dev.jsonl


@dataclass
class ThenCompiled:
    """The outcome: the program kept, which it is, and the dev summaries that decided."""

    program: dspy.Module
    kept: str  # DISTILLED or COMPILED
    dev: dict[str, dict]  # {DISTILLED: dev summary, COMPILED: dev summary}
    demos: int  # demos of the compiled candidate
    wall_s: float  # compiling and scoring the candidate on dev

    @property
    def compiled_kept(self) -> bool:
        return self.kept == COMPILED

    def record(self) -> dict:
        """What summary.json says of it (``then_compile``)."""
        return {"kept": self.kept, "optimizer": OPTIMIZER, "demos": self.demos, "wall_s": round(self.wall_s, 1),
                "dev": {label: summary.get("score") for label, summary in self.dev.items()}}

    def line(self, metric: str) -> str:
        """Which was kept, and why, in one line."""
        before, after = (self.dev[label].get("score") for label in (DISTILLED, COMPILED))
        scores = f"dev {metric}: distilled student {_shown(before)}, with {self.demos} compiled demos {_shown(after)}"
        kept = "the distilled+compiled program" if self.compiled_kept else "the distilled student alone"
        return f"then-compile: kept {kept} ({scores})"


def kept_label(distilled_score: float | None, compiled_score: float | None) -> str:
    """COMPILED only where its dev score is strictly above the distilled student's; a tie keeps the shorter prompt."""
    if compiled_score is None:
        return DISTILLED
    return COMPILED if distilled_score is None or compiled_score > distilled_score else DISTILLED


def compile_distilled(run, task, student_program: dspy.Module, program_options: dict, lm, train: list, dev: list,
                      distilled_dev: dict, *, metric, seed: int, threads: int, log=print) -> ThenCompiled:
    """Compile ``student_program`` with bootstrap on ``train``, answered by ``lm`` (the distilled student), score it
    on ``dev`` into ``eval/compiled.dev.jsonl`` and keep it where it beats ``distilled_dev`` (the distilled
    student's dev summary). The candidate is saved as ``compiled_student/program.json``; a resumed run reloads it.
    Demo counts are the task's compile defaults (a task file's [compile] table), else compile's."""
    started = time.perf_counter()
    defaults = {**COMPILE_DEFAULTS, **task.compile_defaults}
    settings = CompileSettings(seed, threads, defaults["max_demos"], defaults["max_labeled_demos"])
    folder = Path(run.dir) / CANDIDATE_DIR
    folder.mkdir(exist_ok=True)
    compiled = compile_into(folder, task, program_options, OPTIMIZER, settings, train, metric=metric, lm=lm, log=log)
    scored = run.score(compiled, dev, name=CANDIDATE_DEV, metric=metric, lm=lm, desc=f"{COMPILED} dev")
    summaries = {DISTILLED: distilled_dev, COMPILED: scored.summary}
    kept = kept_label(distilled_dev.get("score"), scored.summary.get("score"))
    return ThenCompiled(compiled if kept == COMPILED else student_program, kept, summaries,
                        sum(len(p.demos) for p in compiled.predictors()), time.perf_counter() - started)


def _shown(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.3f}"
