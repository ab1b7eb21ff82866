"""smelt: make a small, local language model good at one task.

    python cli.py compile doc_qa
    python cli.py distill --student llama-3.2-3b
    python cli.py eval doc_qa --program runs/doc_qa/<run>

TASK is a shipped task (`cli.py tasks`), path/to/my_task.py:task, package.module:task, or a task file (.toml).

This file only parses options and prints; every command is a function in smelt.commands (serve and bundle are
declared in cli_deploy.py).
Heavy libraries are imported inside the commands so that --help answers at once.
"""

import os
import sys

import click

from smelt.cli_deploy import bundle_command, export_command, serve_command
from smelt.cli_options import (
    LM_HELP,
    echo,
    given_options,
    log,
    lora_default,
    run_fields,
    run_options,
    teacher_attempt_options,
)
from smelt.optimizers.prompt import OPTIMIZERS, optimizers_help  # a table: no DSPy until an optimizer runs


def _fail(message: str) -> None:
    from smelt.redaction import redact_text

    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())  # a library's own newlines
    click.echo(f"error: {redact_text(one_line)}", err=True)
    _exit(2)


def _exit(status: int) -> None:
    """Leave now. Model calls still running in worker threads (an interrupted or failed scoring pass) would
    otherwise hold the process until they end: minutes with a big model. Every line a run keeps is written
    and flushed as it is made, so nothing is lost."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


class SmeltGroup(click.Group):
    """Turns SmeltError and click's usage errors into one line on stderr, and Ctrl-C into the command that
    continues the run."""

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # `cli.py` alone: the help, as click would show it
            click.echo(exc.ctx.get_help())
            _exit(2)
        except click.UsageError as exc:  # a wrong option or value: one line, and where the options are listed
            command = exc.ctx.command_path if exc.ctx else "cli.py"
            _fail(f"{exc.format_message()} (see `{command} --help`)")
        except click.Abort:
            _exit(130)

    def invoke(self, ctx):
        from smelt.errors import SmeltError

        try:
            return super().invoke(ctx)
        except SmeltError as exc:
            _fail_keeping_the_run(exc)
        except OSError as exc:  # the disk: full, read-only, a file where a folder should be
            from smelt.errors import filesystem_error

            error = filesystem_error(exc)
            if error is None:
                raise
            _fail_keeping_the_run(error)
        except KeyboardInterrupt:
            from smelt.lifecycle import resume_hint

            hint = resume_hint()
            click.echo("\ninterrupted: everything written so far is kept"
                       + (f"; continue with: {hint}" if hint else ""), err=True)
            _exit(130)


def _fail_keeping_the_run(exc) -> None:
    from smelt.lifecycle import resume_hint
    from smelt.redaction import redact_text

    hint = resume_hint()  # a run that stopped part-way keeps what it wrote
    _fail(redact_text(str(exc)) + (f" (what the run wrote is kept; once fixed, continue with: {hint})"
                                   if hint else ""))


def _print_outcome(outcome) -> None:
    """A command's table, then its run directory (smelt.lifecycle.RunOutcome)."""
    echo(outcome.table)
    echo(f"\nrun directory: {outcome.run_dir}")


CONSTRAIN_HELP = ("same as -o constrain=true|false: hold answers to what the task declares (its labels, a date or "
                  "number format, a pattern) and to the field structure (an answer ends: one sentence, no invented "
                  "fields) while the model writes them (default: on; a hosted chat model answers unconstrained)")


@click.group(cls=SmeltGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """smelt: make a small, local language model good at one task.

    compile: optimize a DSPy program's prompts against a metric (baseline vs compiled, side by side).
    distill: train a LoRA adapter on a small student from a compiled program.
    sweep: search compile or distill settings with Optuna (on one machine, or many sharing a study).
    eval / run: score a finished run, or answer one question with it.
    bundle: pack smelt (and model folders) for an offline machine, with an install script.
    export: a distilled student as a merged model, peft adapter, GGUF or Ollama model, with its exact prompt.
    """
    from smelt.redaction import register_url_secrets

    register_url_secrets(" ".join(sys.argv))  # --api-base, --storage: their passwords are never printed


@cli.command()
@click.argument("task", required=False)
@click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)),
              help=f"DSPy optimizer (default: the task's, else bootstrap). {optimizers_help()}")
@click.option("--lm", default="gemma-3-270m", show_default=True, help=LM_HELP)
@click.option("--prompt-lm", metavar="SPEC",
              help="the model that writes instructions for mipro, copro, simba and gepa (their prompt or reflection "
                   "model; default: --lm). One call checks it first: one that cannot write them stops gepa and copro "
                   "and is warned about with mipro and simba. A model spec as for --lm, on --api-base")
@click.option("-o", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="a program option of the task, e.g. -o predictor=cot -o top_k=3 (repeatable; a wrong key or type "
                   "lists the valid ones)")
@click.option("--predictor", type=click.Choice(["predict", "cot"]), help="same as -o predictor=...")
@click.option("--constrain/--no-constrain", default=None, help=CONSTRAIN_HELP)
@click.option("--placement", type=click.Choice(["question_last", "question_first"]), help="doc_qa: -o placement=...")
@click.option("--context-chars", type=int, help="doc_qa: same as -o context_chars=...")
@click.option("--top-k", type=int, help="doc_qa, rag_qa: same as -o top_k=...")
@click.option("--max-demos", type=int, help="bootstrapped demos per predictor (default: the task's, else 2)")
@click.option("--max-labeled-demos", type=int, help="labeled demos per predictor (default: the task's, else 2)")
@click.option("--diverse-demos/--no-diverse-demos", default=None,
              help="no two demos with the same answer while train offers others (default: on for tasks with labels, "
                   "an answer format or short answers)")
@click.option("--resume", type=click.Path(),
              help="continue an interrupted compile run in this run directory, with the options it was started with "
                   "(TASK may be left out; a flag that contradicts the run is refused)")
@run_options()
def compile(task, **kwargs):
    """Compile TASK's prompts: score the baseline, optimize on train, score the compiled program on dev and test.

    TASK: a shipped task (see `cli.py tasks`), path/to/my_task.py:task, package.module:task, or a task file such
    as examples/inquiry_routing.toml."""
    from smelt.commands.compile import CompileOptions, run_compile
    from smelt.commands.resume import recorded_task
    from smelt.programs.registry import get_task
    from smelt.programs.task import parse_option_pairs

    aliases = ("predictor", "constrain", "placement", "context_chars", "top_k")
    given = given_options({name: f"program_options.{name}" for name in aliases})
    if task is None and not kwargs["resume"]:
        _fail("compile needs a TASK (see `cli.py tasks`), e.g. `python cli.py compile doc_qa`")
    shared = run_fields(kwargs)
    alias_values = {k: kwargs.pop(k) for k in aliases}
    pairs = [*kwargs.pop("option_pairs"), *(f"{k}={v}" for k, v in alias_values.items() if v is not None)]
    task = task or recorded_task(kwargs["resume"])
    program_options = parse_option_pairs(get_task(task), pairs)
    options = CompileOptions(task=task, program_options=program_options, **shared, **kwargs)
    _print_outcome(run_compile(options, log=log, given=given))


@cli.command()
@click.argument("task", required=False)
@click.option("--student",
              help="the model to train a LoRA adapter on (in-process; required unless --resume). " + LM_HELP)
@click.option("--teacher",
              help="a compile run directory (its program on its model), a sweep run directory (its best trial), or "
                   "a model spec (the uncompiled program). Default: the most recent compile run (of TASK, if given)")
@click.option("-o", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="a program option for a model-spec --teacher (and so the student), e.g. -o rewrite=true for "
                   "rag_qa; a teacher run brings its own")
@click.option("--constrain/--no-constrain", default=None,
              help="same as -o constrain=true|false for a model-spec --teacher, and so the student (a teacher run "
                   "brings its own: compile it with --no-constrain): answers held to what the task declares and to "
                   "the field structure while the model writes them (default: on)")
@click.option("--min-score", default=0.5, show_default=True, help="keep teacher answers scoring at least this (0-1)")
@click.option("--use-labels/--no-use-labels", default=True, show_default=True,
              help="where the teacher missed, train on the gold answer")
@click.option("--synthetic", default=0, show_default=True,
              help="N extra questions written by the teacher over the train documents, kept when the judge rates "
                   "them 7/10 or more (the teacher judges when --judge is not given)")
@teacher_attempt_options()
@click.option("--lora-r", type=int, help=f"LoRA rank ({lora_default('r')})")
@click.option("--lora-alpha", type=float, help="LoRA alpha (default 2 x rank)")
@click.option("--lora-dropout", type=float, help=f"LoRA dropout ({lora_default('dropout')})")
@click.option("--target-modules", help="comma-separated module names, or all-linear (default q,k,v,o projections)")
@click.option("--learning-rate", type=float, help=f"peak learning rate ({lora_default('learning_rate')})")
@click.option("--epochs", type=int, help=f"passes over the SFT set ({lora_default('epochs')})")
@click.option("--batch-size", type=int, help=f"examples per step ({lora_default('batch_size')})")
@click.option("--grad-accum", type=int, help=f"steps to accumulate before an update ({lora_default('grad_accum')})")
@click.option("--max-length", type=int,
              help=f"max tokens of prompt + completion; longer examples are dropped ({lora_default('max_length')})")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None,
              help=f"trade compute for memory ({lora_default('gradient_checkpointing')})")
@click.option("--qlora", is_flag=True, help="4-bit base weights (CUDA with bitsandbytes installed)")
@click.option("--merge", is_flag=True, help="also write merged weights (for vLLM or llama.cpp conversion)")
@click.option("--student-instructions", is_flag=True,
              help="keep DSPy's system message (field list and task instructions) in the student's prompt; by "
                   "default it is left out, since the adapter learns the task, and prompts are about half as long")
@click.option("--then-compile", is_flag=True,
              help="after training, compile the distilled student's prompt too (bootstrap demos on train, answered "
                   "by the student with its adapter) and keep it only if it beats the distilled student on dev; the "
                   "program kept is the run's program.json and is scored on test")
@click.option("--resume", type=click.Path(),
              help="continue an interrupted distill run in this run directory, with the options it was started with "
                   "(its teacher, SFT set and checkpoints; a flag that contradicts the run is refused)")
@run_options()
def distill(task, **kwargs):
    """Distill a compiled program into a LoRA adapter on a small student.

    TASK may be left out when the teacher is a run directory (or the latest compile run): it is the run's task.
    Otherwise it is a shipped task, path/to/my_task.py:task, package.module:task or a task file (.toml).
    Scores the teacher, the bare student and the distilled student side by side on test (with --then-compile, the
    distilled+compiled program too, where dev kept it)."""
    from smelt.commands.distill import DistillOptions, run_distill
    from smelt.programs.registry import get_task
    from smelt.programs.task import parse_option_pairs

    lora_names = {"lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "target_modules",
                  "learning_rate": "learning_rate", "epochs": "epochs", "batch_size": "batch_size",
                  "grad_accum": "grad_accum", "max_length": "max_length",
                  "gradient_checkpointing": "gradient_checkpointing", "qlora": "qlora"}
    given = given_options({option: f"lora.{name}" for option, name in lora_names.items()})
    shared = run_fields(kwargs)
    lora = {field: kwargs.pop(option) for option, field in lora_names.items()}
    lora = {k: v for k, v in lora.items() if v is not None and v is not False}
    constrain = kwargs.pop("constrain")
    pairs = (*kwargs.pop("option_pairs"), *([f"constrain={constrain}"] if constrain is not None else []))
    if pairs and task is None:
        _fail("-o needs the TASK named, e.g. `python cli.py distill rag_qa -o rewrite=true --student ... --teacher "
              "MODEL`")
    program_options = parse_option_pairs(get_task(task), pairs) if pairs else {}
    options = DistillOptions(task=task, lora=lora, program_options=program_options, **shared, **kwargs)
    _print_outcome(run_distill(options, log=log, given=given))


@cli.command()
@click.argument("task", required=False)
@click.option("--stage", default="compile", show_default=True,
              help="compile: optimizer, demos and program options per trial; distill: LoRA settings per trial "
                   "on one shared SFT set")
@click.option("--trials", type=int, help="trials in the study, all workers together (default 12; with --resume, "
                                        "the recorded number)")
@click.option("--timeout", "timeout_min", type=float, help="minutes after which a worker starts no new trial")
@click.option("--space", type=click.Path(), help="YAML or TOML file overriding entries of the default search "
                                                  "space (see --show-space)")
@click.option("--show-space", is_flag=True, help="print the search space for TASK and --stage, and exit")
@click.option("--objective", default="score", show_default=True,
              help="score (maximize the dev metric), or two objectives: score,prompt_tokens or score,latency "
                   "(a Pareto front; no pruning)")
@click.option("--storage", help="postgresql://USER:PASSWORD@HOST/DB to share the study between machines (needs "
                               "`pip install -e \".[postgres]\"`), or sqlite:///FILE for one process. Default: a "
                               "journal file in the sweep's run directory")
@click.option("--study", help="study name; workers with the same --storage and --study share it "
                             "(default: TASK-STAGE)")
@click.option("--workers", default=1, show_default=True,
              help="worker processes on this machine (with --device cuda, one per GPU)")
@click.option("--heartbeat", "heartbeat_s", default=60, show_default=True,
              help="PostgreSQL: seconds between a worker's heartbeats; a trial silent for two is failed and retried")
@click.option("--lm", default="gemma-3-270m", show_default=True, help="stage compile: the program's model. " + LM_HELP)
@click.option("--prompt-lm", metavar="SPEC",
              help="stage compile: the model that writes instructions for the trials' mipro, copro, simba and gepa "
                   "(default: --lm; see `compile --help`)")
@click.option("--student", help="stage distill: the model to train adapters on. " + LM_HELP)
@click.option("--teacher", help="stage distill: a compile or sweep run directory, or a model spec "
                               "(default: the most recent compile run)")
@click.option("--min-score", default=0.5, show_default=True, help="stage distill: keep teacher answers scoring at "
                                                                   "least this (0-1)")
@click.option("--use-labels/--no-use-labels", default=True, show_default=True,
              help="stage distill: where the teacher missed, train on the gold answer")
@click.option("--synthetic", default=0, show_default=True, help="stage distill: N extra teacher-written questions")
@teacher_attempt_options("stage distill: ")
@click.option("--student-instructions", is_flag=True, help="stage distill: keep DSPy's system message in the "
                                                            "student's prompt")
@click.option("--constrain/--no-constrain", default=None,
              help="stage compile: -o constrain=true|false for every trial's program; stage distill: for a "
                   "model-spec --teacher and so the student (default: on; see `compile --help`)")
@click.option("--resume", type=click.Path(), help="continue an interrupted sweep (its recorded options, up to "
                                                  "--trials)")
@run_options()
def sweep(task, show_space, **kwargs):
    """Sweep TASK's compile or distill settings with Optuna; score the best and the default on test.

    Each trial is a run directory under the sweep's trials/, scored on dev; test is seen only at the end.
    TASK: a shipped task, path/to/my_task.py:task, package.module:task or a task file (.toml)."""
    from smelt.commands.sweep import resumed_sweep_options, run_sweep
    from smelt.commands.sweep_options import SweepOptions, space_for

    given = given_options()
    options = SweepOptions(task=task, **run_fields(kwargs), **kwargs)
    if show_space:
        options = resumed_sweep_options(options, given) if options.resume else options
        options.check()
        click.echo(space_for(options).describe())
        return
    _print_outcome(run_sweep(options, log=log, given=given))


@cli.command("eval")
@click.argument("task", required=False)
@click.option("--program", type=click.Path(),
              help="a compile or distill run directory, or a sweep's (its best trial); required unless --resume")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "dev", "test"]),
              help="which split of the task's data to score (ignored with --data FILE alone: all of it is scored)")
@click.option("--lm", help="run the program on another model (default: the one it was built for). " + LM_HELP)
@click.option("--resume", type=click.Path(),
              help="continue an interrupted eval run in this run directory, with the options it was started with")
@run_options(metric_help="default: the program run's metric")
def eval_command(task, **kwargs):
    """Score a finished run's program on a split of its task's data, or on --data FILE.

    TASK (optional: the run knows its task) makes sure the run is of that task."""
    from smelt.commands.evaluate_run import EvalOptions, run_eval

    given = given_options()
    options = EvalOptions(task=task, **run_fields(kwargs), **kwargs)
    _print_outcome(run_eval(options, log=log, given=given))


@cli.command("run")
@click.argument("task", required=False)
@click.option("--program", required=True, type=click.Path(),
              help="a compile or distill run directory, or a sweep's (its best trial)")
@click.option("-i", "--input", "input_pairs", multiple=True, metavar="NAME=VALUE",
              help="one input field of the task: NAME=text, NAME=@FILE (a UTF-8 file) or NAME=@- (standard input); "
                   "repeat for each input, e.g. -i document=@notice.txt -i question='When is it closed?'")
@click.option("--document", help="same as -i document=@FILE (- reads standard input)")
@click.option("--question", help="same as -i question=TEXT")
@click.option("--lm", help="run on another model. " + LM_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps")
@click.option("--api-base", help="server URL for the run's server model; 'recorded': the server the run recorded "
                                  "(a run directory never chooses where your inputs and keys go by itself)")
def run_command(task, program, input_pairs, document, question, lm, device, api_base):
    """Answer one input with a finished run's program; prints the task's output (each field, if several).

    TASK (optional: the run knows its task) makes sure the run is of that task."""
    from smelt.commands.answer import answer, parse_inputs

    pairs = [*input_pairs, *([f"document=@{document}"] if document else []),
             *([f"question={question}"] if question else [])]
    outputs = answer(program, parse_inputs(pairs), task=task, lm=lm, device=device, api_base=api_base, log=log)
    for name, value in outputs.items():
        echo(value if len(outputs) == 1 else f"{name}: {value}")


@cli.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(), metavar="RUN_DIR...")
@click.option("--out", default="report.html", show_default=True, type=click.Path(),
              help="where to write the page (a folder: report.html inside it). Never over a file of a run; an "
                   "existing file elsewhere only when it is a page smelt wrote, or with --force")
@click.option("--force", is_flag=True, help="replace an existing --out file that is not a smelt page")
def report_command(run_dirs, out, force):
    """Write one self-contained report.html comparing finished runs, and print its path.

    Each RUN_DIR (compile, distill, eval or sweep) brings the program it produced, read from its records on test
    (else dev) and compared on the example ids all of them scored: the table, scores by language, a radar, example
    answers side by side and each program's instructions and demos. Nothing is run again. One RUN_DIR gives the
    page of its own report.html."""
    from smelt.commands.report import write_comparison

    click.echo(write_comparison(run_dirs, out, force=force))


@cli.command()
def tasks():
    """List the shipped tasks, with their fields and program options."""
    from smelt.programs.registry import shipped_tasks
    from smelt.programs.task import describe_options

    for name, task in shipped_tasks().items():
        click.echo(f"{name}: {task.description}")
        click.echo(f"    {', '.join(task.input_fields)} -> {', '.join(task.output_fields)}; "
                   f"metric {task.default_metric}; -o {describe_options(task.options)}")
    click.echo("\nYour own: TASK as path/to/my_task.py:task, package.module:task, or a task file (.toml, .yaml); "
               "see docs/tasks.md (README, \"Tasks\").")


@cli.command()
def models():
    """List model aliases and which models are cached locally."""
    from smelt.lm.catalog import list_models

    rows = list_models()
    width = max(len(row["spec"]) for row in rows)
    for row in rows:
        status = {True: f"cached: {row['location']}", False: row["location"], None: row["description"]}[row["cached"]]
        click.echo(f"{row['spec']:<{width}}  {row['target']:<34}  {status}")


cli.add_command(serve_command)  # declared in cli_deploy.py; --help lists commands by name
cli.add_command(bundle_command)
cli.add_command(export_command)


if __name__ == "__main__":
    cli()
