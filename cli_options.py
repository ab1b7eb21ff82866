"""The options several commands share (model specs, metric and judge, data, seeds, where runs go), what the
command line typed, for --resume to compare with the run's recorded options, and the redacted printing every
command uses. cli.py (and cli_deploy.py) declare each command."""

import click

from smelt.lm.backends import lm_help
from smelt.optimizers.distill.lora_config import CUDA_DEFAULTS, LoraTrainingConfig
from smelt.optimizers.distill.teacher_attempts import DEFAULT_TEACHER_ATTEMPTS, DEFAULT_TEACHER_TEMPERATURE
from smelt.programs.metric_names import metrics_help  # a table of names and help: no model, no DSPy
from smelt.redaction import redact_text

LM_HELP = lm_help()


def echo(message: str, err: bool = False) -> None:
    """Print a line with no password or registered secret in it (``smelt.redaction``)."""
    click.echo(redact_text(message), err=err)


def log(message: str) -> None:
    echo(message, err=True)


def lora_default(name: str) -> str:
    """'default X' for a LoRA option, with the CUDA value where it differs from the CPU one."""
    cpu = getattr(LoraTrainingConfig, name)
    cuda = CUDA_DEFAULTS.get(name, cpu)
    text = lambda value: ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"  # noqa: E731
    return f"default {text(cpu)}" if cuda == cpu else f"default {text(cpu)} on CPU, {text(cuda)} on CUDA"


METRIC_HELP = "Default: judge when --judge is given, else the task's metric"


def _check_metric_name(ctx, param, value):
    """--metric's form, checked before anything loads (whether a judge is needed is the command's to check)."""
    from smelt.eval.judge import metric_name  # lazy: eval.judge pulls DSPy, and `compile --help` must not

    return value and metric_name(value, has_judge=True)


def run_options(metric_help: str = METRIC_HELP):
    """The options every scoring command shares (smelt.commands.common.RunOptions), data options last."""
    options = [
        click.option("--metric", metavar="NAME[+grounded]", callback=_check_metric_name,
                     help=f"{metrics_help()}. {metric_help}"),
        click.option("--judge", multiple=True,
                     help="model spec of the judge for --metric judge; repeat it for a jury (their mean rating, and "
                          "the examples where they disagree by 4 or more in the report). " + LM_HELP),
        click.option("--criteria", type=click.Path(),
                     help="a rubric file (YAML, TOML or JSON: `name: what it asks` per item, e.g. accuracy, "
                          "language, conciseness, no invention): the judge rates each item 0-10, the score is "
                          "their mean"),
        click.option("--seed", default=0, show_default=True,
                     help="seed for data splits, optimizers, sampling and LoRA training"),
        click.option("--threads", default=8, show_default=True,
                     help="parallel requests (in-process models batch them)"),
        click.option("--device", default="auto", show_default=True,
                     help="auto, cpu, cuda, cuda:N or mps (for in-process models)"),
        click.option("--api-base", help="server URL for LiteLLM models, e.g. http://gpu-box:8000/v1 for vLLM; "
                                        "'recorded': a run's own server (--resume, a run as --teacher), which a run "
                                        "directory never chooses by itself"),
        click.option("--runs-root", type=click.Path(),
                     help="where run directories go (default: ./runs or $SMELT_RUNS)"),
        click.option("--no-cache", is_flag=True, help="do not reuse DSPy's cached model responses"),
        click.option("--latency-sample", default=8, show_default=True,
                     help="also time this many test examples one request at a time, uncached (0: skip)"),
        click.option("--data", help="JSONL, CSV or Parquet file (or a hub dataset id), split by --seed into "
                                   "train/dev/test 40/20/40. Default: the task's shipped data."),
        click.option("--train", "train_file", help="train split file (with --dev and --test)"),
        click.option("--dev", "dev_file", help="dev split file"),
        click.option("--test", "test_file", help="test split file"),
        click.option("--field", "fields", multiple=True, metavar="NAME=COLUMN",
                     help="map a task field to a column of your data, e.g. --field answer=gold (repeatable)"),
        click.option("--max-train", type=int, help="use only the first N train examples"),
        click.option("--max-dev", type=int, help="use only the first N dev examples"),
        click.option("--max-test", type=int, help="use only the first N test examples"),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def teacher_attempt_options(stage: str = ""):
    """--teacher-attempts and --teacher-temperature, for distill and (``stage`` "stage distill: ") sweep."""
    options = [
        click.option("--teacher-attempts", type=int, default=DEFAULT_TEACHER_ATTEMPTS, show_default=True,
                     help=f"{stage}answer each train input up to N times until the teacher's answer reaches "
                          "--min-score: attempt 1 greedy, later ones sampled at --teacher-temperature and only for "
                          "the inputs still below it. A passing trace teaches every step of a multi-step program, "
                          "where gold answers teach only the last; 1: answer each input once"),
        click.option("--teacher-temperature", type=float, default=DEFAULT_TEACHER_TEMPERATURE, show_default=True,
                     help=f"{stage}the sampling temperature of the teacher's attempts after the first "
                          "(--teacher-attempts), above 0 and at most 2"),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def run_fields(kwargs) -> dict:
    """Pops the shared options out of kwargs as RunOptions fields."""
    from smelt.commands.common import DataOptions  # lazy: commands.common pulls DSPy, and --help must not

    data = DataOptions(
        data=kwargs.pop("data"), train=kwargs.pop("train_file"), dev=kwargs.pop("dev_file"),
        test=kwargs.pop("test_file"), fields=kwargs.pop("fields"), max_train=kwargs.pop("max_train"),
        max_dev=kwargs.pop("max_dev"), max_test=kwargs.pop("max_test"),
    )
    shared = {name: kwargs.pop(name) for name in ("metric", "criteria", "seed", "threads", "device", "api_base",
                                                  "runs_root", "latency_sample")}
    shared["judge"] = ",".join(kwargs.pop("judge")) or None  # several specs: a jury
    return {**shared, "data": data, "cache": not kwargs.pop("no_cache")}


DATA_PATHS = {"no_cache": "cache", "data": "data.data", "train_file": "data.train", "dev_file": "data.dev",
               "test_file": "data.test", "fields": "data.fields", "max_train": "data.max_train",
               "max_dev": "data.max_dev", "max_test": "data.max_test"}


def given_options(paths: dict[str, str] | None = None) -> dict[str, str]:
    """The options typed on this command line (not left to their defaults), as {option path: flag}: what a
    --resume compares with the run's recorded options (smelt.commands.resume). ``paths`` renames a parameter to
    its place in the options dataclass, e.g. lora_r -> lora.r."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    paths = {**DATA_PATHS, **(paths or {})}
    given = {}
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            continue
        flag = param.opts[0] if param.opts else param.name
        if param.name == "option_pairs":  # -o key=value: each key is its own option
            for pair in ctx.params["option_pairs"]:
                key = pair.partition("=")[0].strip()
                given[f"program_options.{key}"] = f"-o {key}"
        else:
            given[paths.get(param.name, param.name)] = flag
    return given
