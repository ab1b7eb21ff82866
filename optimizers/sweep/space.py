"""Search spaces of a sweep: what each trial samples, a default per task and stage, overridable by a file.

A space maps a parameter name to one of:

    optimizer: [none, labeled, bootstrap]        # categorical (a list, or {choices: [...]})
    max_demos: {low: 0, high: 4}                 # int range (both ends ints), optional step
    learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}   # float range, optionally log scale
    placement: question_last                     # a fixed value

A space file (YAML or TOML) replaces the default entry of each name it gives and keeps the others.

Every value a space can produce (each choice, a range's two ends, a fixed value) is checked before the first trial,
by the check the same setting meets on the command line (``value_check``): a value no trial could run with is one
error now, not a failed trial each time it is drawn.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from smelt.errors import SmeltError
from smelt.optimizers.distill.lora_config import LoraTrainingConfig
from smelt.optimizers.prompt import CompileSettings, check_optimizer
from smelt.programs.task import Task, describe_options, parse_option_pairs

# The check of one value a space gives a parameter: (name, value) -> None, or a SmeltError saying why not.
ValueCheck = Callable[[str, Any], None]

# Optimizers a small local model can drive: they only need it to answer, not to write instructions.
ANSWER_ONLY_OPTIMIZERS = ("none", "labeled", "bootstrap")
# random_search is left out of the default space: it bootstraps every candidate one example at a time, so a trial
# costs several times the others on a CPU (docs/benchmarks.md). Worth it where calls are cheap (a GPU or a server);
# a space file can add it anywhere. mipro and simba need the model to write instructions: not a 270M base model.
CAPABLE_MODEL_OPTIMIZERS = ("random_search", "mipro", "simba")
COMPILE_KNOBS = ("optimizer", "max_demos", "max_labeled_demos", "num_candidates")
LORA_KNOBS = ("r", "alpha_ratio", "dropout", "learning_rate", "epochs", "target_modules")
# then_compile: the trial also compiles the distilled student's prompt, kept where dev improves (distill
# --then-compile). Off in the default space, which then costs what it did; `then_compile: [false, true]` sweeps it.
DISTILL_KNOBS = (*LORA_KNOBS, "then_compile")


@dataclass(frozen=True)
class Param:
    """One entry of a space: categorical ``choices``, an int/float range, or a fixed ``value``."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    value: Any = None

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.low, bool)

    def suggest(self, trial: optuna.Trial):
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.low is not None:
            if self.is_int:
                return trial.suggest_int(self.name, self.low, self.high, step=int(self.step or 1), log=self.log)
            return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)
        return self.value

    def contains(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        if self.low is not None:
            return isinstance(value, int | float) and self.low <= value <= self.high
        return value == self.value

    def checked_values(self) -> tuple:
        """The values that stand for all it can produce: every choice, a range's two ends, or the fixed value."""
        if self.choices is not None:
            return self.choices
        if self.low is not None:
            return (self.low, self.high)
        return (self.value,)

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.low is not None:
            kind = "int" if self.is_int else "float"
            return f"{kind} {self.low} .. {self.high}" + (" (log)" if self.log else "") + \
                (f" step {self.step}" if self.step else "")
        return f"fixed {self.value}"


@dataclass(frozen=True)
class Space:
    params: dict[str, Param]

    def suggest(self, trial: optuna.Trial) -> dict:
        """Sample every parameter; conditional ones only where they matter (num_candidates for random search; choice
        where the predictor writes only its answer: a label chosen by likelihood follows no reasoning)."""
        values = {}
        for name, param in self.params.items():
            if name == "num_candidates" and values.get("optimizer", "random_search") != "random_search":
                continue
            if name == "choice" and values.get("predictor", "predict") != "predict":
                continue
            values[name] = param.suggest(trial)
        return values

    def contains(self, params: dict) -> bool:
        return all(name in self.params and self.params[name].contains(value) for name, value in params.items())

    def describe(self) -> str:
        width = max(map(len, self.params), default=0)
        return "\n".join(f"{name:<{width}}  {param.describe()}" for name, param in self.params.items())

    def to_dict(self) -> dict:
        out = {}
        for name, p in self.params.items():
            if p.choices is not None:
                out[name] = list(p.choices)
            elif p.low is not None:
                out[name] = {"low": p.low, "high": p.high, **({"log": True} if p.log else {}),
                             **({"step": p.step} if p.step else {})}
            else:
                out[name] = p.value
        return out


def default_space(stage: str, task_space: dict, *, capable_model: bool, decoding: dict | None = None) -> Space:
    """The default search space of a stage. ``task_space`` is the task's own (its ``sweep_space``), ``decoding``
    the knobs of how a compile trial's program decodes (``decoding_space``); the task's own entries win."""
    if stage == "compile":
        optimizers = ANSWER_ONLY_OPTIMIZERS + (CAPABLE_MODEL_OPTIMIZERS if capable_model else ())
        entries: dict[str, Any] = {
            "optimizer": list(optimizers),
            "max_demos": {"low": 1, "high": 4},
            "max_labeled_demos": {"low": 0, "high": 4},
            "num_candidates": {"low": 2, "high": 4},
        }
        program = _program_option_space(task_space, capable_model)
        # After the task's own knobs, which win: choice is sampled only once the predictor is known (suggest).
        entries |= program | {name: entry for name, entry in (decoding or {}).items() if name not in program}
    elif stage == "distill":
        entries = {
            "r": [4, 8, 16, 32],
            "alpha_ratio": [1.0, 2.0],  # alpha = ratio x r
            "dropout": {"low": 0.0, "high": 0.1},
            "learning_rate": {"low": 1e-4, "high": 2e-3, "log": True},
            "epochs": {"low": 1, "high": 3},
            "target_modules": ["q_proj,k_proj,v_proj,o_proj", "q_proj,v_proj", "all-linear"],
            "then_compile": False,
        }
    else:
        raise SmeltError(f"--stage {stage!r}: use compile or distill")
    return Space({name: _parse_param(name, entry, f"default {stage} space") for name, entry in entries.items()})


def widened_to(space: Space, defaults: dict) -> Space:
    """``space`` with each int range of a compile knob stretched to take the task's own default for it (a task file's
    ``[compile]`` table may ask for 6 labeled demos), so that its default configuration is a trial of the study."""
    params = dict(space.params)
    for name, value in defaults.items():
        param = params.get(name)
        if name in COMPILE_KNOBS and param is not None and param.is_int and isinstance(value, int):
            params[name] = replace(param, low=min(param.low, value), high=max(param.high, value))
    return Space(params)


def decoding_space(*, labels: bool, in_process: bool, constrain: bool | None) -> dict:
    """How a compile trial's program decodes, every task's options: answers held to their declared shape or not
    (fixed where ``--constrain``/``--no-constrain`` is given); for a task with labels on a model smelt runs in
    process, the label written or chosen by its calibrated likelihood (a server gives no likelihood per label)."""
    knobs: dict[str, Any] = {"constrain": [True, False] if constrain is None else constrain}
    if labels and in_process:
        knobs["choice"] = ["generate", "likelihood"]
    return knobs


def _program_option_space(task_space: dict, capable_model: bool) -> dict:
    """The task's own knobs, as its ``sweep_space`` gives them.

    A small base model gains nothing from chain of thought and pays ~5x the tokens (and bootstrapping rarely
    finds a parseable trace), so for it a ``predictor`` knob stays Predict unless a space file says otherwise."""
    entries = dict(task_space)
    if "predictor" in entries and not capable_model:
        entries["predictor"] = "predict"
    return entries


def allowed_names(stage: str, task_options: dict) -> tuple[str, ...]:
    return (COMPILE_KNOBS + tuple(task_options)) if stage == "compile" else DISTILL_KNOBS


def value_check(stage: str, task: Task | None = None) -> ValueCheck:
    """The check a value of a ``stage`` space meets: the optimizer registry and CompileSettings for the compile
    knobs, the task's ``-o key=value`` check for its program options; LoraTrainingConfig for the LoRA knobs."""
    if stage == "distill":
        return _check_distill_knob

    def check(name: str, value: Any) -> None:
        if name == "optimizer":
            check_optimizer(value)
        elif name in COMPILE_KNOBS:
            CompileSettings(**{name: value})
        else:
            _check_program_option(task, name, value)

    return check


def _check_program_option(task: Task, name: str, value: Any) -> None:
    """``value`` as ``-o name=value`` is checked (its type, then the options dataclass's own rules), and of the
    type it converts to: a trial passes the space's value itself, unconverted."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    converted = parse_option_pairs(task, [f"{name}={text}"])[name]
    if converted != value or isinstance(converted, str) != isinstance(value, str):
        raise SmeltError(f"of type {type(value).__name__}; task {task.name}'s options and their types: "
                         f"{describe_options(task.options)}")
    task.options(**{name: converted})  # the dataclass's own rules (e.g. top_k >= 1), the others at their defaults


def _check_distill_knob(name: str, value: Any) -> None:
    if name == "then_compile":
        if not isinstance(value, bool):
            raise SmeltError("then_compile is true or false")
        return
    _check_lora_knob(name, value)


def _check_lora_knob(name: str, value: Any) -> None:
    # alpha = alpha_ratio x r, positive exactly when the ratio is.
    LoraTrainingConfig(**{"alpha" if name == "alpha_ratio" else name: value})


# How a check's message starts when it echoes the command-line option, e.g. "-o top_k=-3: " or "--optimizer 'x': ".
_OPTION_ECHO = re.compile(r"^-{1,2}[\w-]+(?: \S+)?: ")


def check_values(params: dict[str, Param], check: ValueCheck, where: str) -> None:
    """Every value ``params`` can produce passes ``check``; else one error naming ``where``, the name and value."""
    for name, param in params.items():
        for value in param.checked_values():
            try:
                check(name, value)
            except SmeltError as exc:
                reason = _OPTION_ECHO.sub("", str(exc), count=1)
                raise SmeltError(f"{where}: {name}: {value!r} is not allowed ({reason})") from None


def load_space(path: str | Path, base: Space, allowed: tuple[str, ...], check: ValueCheck | None = None) -> Space:
    """``base`` with the entries of a YAML or TOML space file in place of its own; errors name the key. ``check``
    (``value_check``) refuses a value no trial could run with."""
    path = Path(path)
    if not path.is_file():
        raise SmeltError(f"--space {path}: no such file; pass a YAML or TOML file (see `sweep TASK --show-space`)")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise SmeltError(f"--space {path}: use a .yaml, .yml or .toml file")
    except tomllib.TOMLDecodeError as exc:
        raise SmeltError(f"--space {path}: not valid TOML ({exc})") from exc
    except Exception as exc:
        if isinstance(exc, SmeltError):
            raise
        raise SmeltError(f"--space {path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SmeltError(f"--space {path}: a space is a mapping of parameter names to ranges or choices")
    given = {}
    for name, entry in data.items():
        if name not in allowed:
            raise SmeltError(f"--space {path}: unknown parameter {name!r}; allowed: {', '.join(allowed)}")
        given[name] = _parse_param(name, entry, f"--space {path}")
    if check is not None:
        check_values(given, check, f"--space {path}")
    return Space({**base.params, **given})


def _parse_param(name: str, entry, where: str) -> Param:
    def bad(what: str) -> SmeltError:
        return SmeltError(f"{where}: {name}: {what}; use a list of choices, {{low: L, high: H}} (ints or floats, "
                          "optional log: true, step), or one fixed value")

    if isinstance(entry, list):
        entry = {"choices": entry}
    if not isinstance(entry, dict):
        if isinstance(entry, str | int | float | bool):
            return Param(name, value=entry)
        raise bad(f"unsupported value {entry!r}")
    unknown = set(entry) - {"choices", "low", "high", "log", "step"}
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}")
    if "choices" in entry:
        if set(entry) != {"choices"}:
            raise bad("choices cannot be combined with low/high/log/step")
        choices = entry["choices"]
        if not isinstance(choices, list) or not choices:
            raise bad("choices must be a non-empty list")
        if not all(isinstance(c, str | int | float | bool) for c in choices):
            raise bad("choices must be strings, numbers or booleans")
        return Param(name, choices=tuple(choices))
    if "low" not in entry or "high" not in entry:
        raise bad("a range needs both low and high")
    low, high = entry["low"], entry["high"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise bad("low and high must be numbers")
    if low > high:
        raise bad(f"low {low} is above high {high}")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise bad("log must be true or false")
    if log and low <= 0:
        raise bad("a log range needs low > 0")
    step = entry.get("step")
    if step is not None and (not isinstance(step, int | float) or step <= 0 or log):
        raise bad("step must be a positive number, and cannot be combined with log")
    if isinstance(low, int) and isinstance(high, int) and isinstance(step, float):
        low, high = float(low), float(high)
    return Param(name, low=low, high=high, log=log, step=step)
