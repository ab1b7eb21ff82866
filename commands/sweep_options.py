"""What a sweep is asked to do: its options, its objectives and its search space, shared by the sweep and its
workers (``commands.sweep``, ``commands.sweep_worker``)."""

from __future__ import annotations

from dataclasses import dataclass

from smelt.commands.common import RunOptions
from smelt.commands.teacher import check_attempt_options
from smelt.errors import SmeltError
from smelt.lm.specs import parse_spec
from smelt.optimizers.distill.teacher_attempts import DEFAULT_TEACHER_ATTEMPTS, DEFAULT_TEACHER_TEMPERATURE
from smelt.optimizers.sweep.space import (
    allowed_names,
    check_values,
    decoding_space,
    default_space,
    load_space,
    value_check,
    widened_to,
)
from smelt.programs.registry import get_task

OBJECTIVES = {  # objective -> (dev summary key, direction)
    "score": ("score", "maximize"),
    "prompt_tokens": ("prompt_tokens_per_example", "minimize"),
    "latency": ("latency_s_per_example", "minimize"),
}


@dataclass
class SweepOptions(RunOptions):
    task: str | None = None  # None (distill stage only): the teacher run's task
    stage: str = "compile"
    trials: int | None = None  # None: 12, or what a resumed sweep recorded
    timeout_min: float | None = None  # stop starting trials after this many minutes
    space: str | None = None  # YAML or TOML file overriding the default space
    objective: str = "score"  # "score", or two: "score,prompt_tokens" / "score,latency"
    storage: str | None = None  # None: a journal file in the run directory
    study: str | None = None  # default: <task>-<stage>
    workers: int = 1
    heartbeat_s: int = 60  # PostgreSQL: a worker silent for 2 of these has its trial failed and retried
    resume: str | None = None
    # --constrain/--no-constrain: -o constrain=... for every trial's program (stage compile), and for a model-spec
    # teacher and so the student (stage distill); None: the task's default, or what a teacher run recorded
    constrain: bool | None = None
    # compile stage
    lm: str = "gemma-3-270m"
    prompt_lm: str | None = None  # the model that writes mipro/copro/simba/gepa's instructions; None: --lm
    # distill stage
    student: str | None = None
    teacher: str | None = None
    min_score: float = 0.5
    use_labels: bool = True
    synthetic: int = 0
    teacher_attempts: int = DEFAULT_TEACHER_ATTEMPTS
    teacher_temperature: float = DEFAULT_TEACHER_TEMPERATURE
    student_instructions: bool = False

    def objectives(self) -> tuple[str, ...]:
        names = tuple(name.strip() for name in self.objective.split(",") if name.strip())
        for name in names:
            if name not in OBJECTIVES:
                raise SmeltError(f"--objective {self.objective}: unknown objective {name!r}; use score, or score "
                                 "with one of prompt_tokens, latency (e.g. score,latency)")
        if not names or names[0] != "score" or len(names) > 2 or len(set(names)) != len(names):
            raise SmeltError(f"--objective {self.objective}: use score, score,prompt_tokens or score,latency")
        return names

    def uses_cache(self) -> bool:
        """DSPy's cache, unless an objective is tokens or latency: those must be measured, not cached."""
        return self.cache and self.objectives() == ("score",)

    def check(self) -> None:
        if self.stage not in ("compile", "distill"):
            raise SmeltError(f"--stage {self.stage!r}: use compile or distill")
        if self.trials is not None and self.trials < 1:
            raise SmeltError("--trials must be 1 or more")
        if self.workers < 1:
            raise SmeltError("--workers must be 1 or more")
        if self.timeout_min is not None and self.timeout_min <= 0:
            raise SmeltError("--timeout must be a positive number of minutes")
        if self.heartbeat_s < 1:
            raise SmeltError("--heartbeat must be at least 1 second")
        if self.stage == "compile" and self.task is None:
            raise SmeltError("sweep --stage compile needs a TASK (see `cli.py tasks`)")
        if self.prompt_lm:
            if self.stage != "compile":
                raise SmeltError(f"--prompt-lm {self.prompt_lm}: the prompt model writes a compile stage's "
                                 "instructions; drop it with --stage distill")
            parse_spec(self.prompt_lm, "--prompt-lm")
        if self.stage == "distill":
            check_attempt_options(self)
        self.objectives()


def space_for(options: SweepOptions):
    """The search space: the stage's default for the task and model, with --space entries in place."""
    task = get_task(options.task) if options.task else None
    task_options = task.default_options() if task else {}
    spec = parse_spec(options.lm, "--lm")
    capable = options.stage == "compile" and _is_capable(spec)
    decoding = decoding_space(labels=bool(task and task.answer_labels), in_process=spec.in_process,
                              constrain=options.constrain)
    space = default_space(options.stage, task.sweep_space if task else {}, capable_model=capable, decoding=decoding)
    if task is not None and options.stage == "compile":
        space = widened_to(space, task.compile_defaults)
    check = value_check(options.stage, task)
    if task is not None:  # a task's own sweep_space is checked like a space file
        check_values({name: space.params[name] for name in task.sweep_space if name in space.params}, check,
                     f"task {task.name}: its sweep_space")
    if options.space:
        space = load_space(options.space, space, allowed_names(options.stage, task_options), check)
    return space


def _is_capable(spec) -> bool:
    """Models that can write instructions (MIPROv2, SIMBA): served models and aliases of instruct checkpoints,
    not the embedded 270M base model."""
    return spec.kind != "embedded"
