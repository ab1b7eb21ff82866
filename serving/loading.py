"""The run ``serve`` answers with: loaded the way ``run`` loads it (``smelt.lifecycle.reloaded_run.load_run``: a
sweep is its best trial, the server is the one the user names, program.json chooses no model), and what
``GET /v1/program`` says of it: the task, the program, the model, and the scores the run measured."""

from pathlib import Path

from smelt.errors import SmeltError
from smelt.lifecycle.recorded_task import python_task_source
from smelt.lifecycle.reloaded_run import LoadedRun, load_run
from smelt.lifecycle.run_scores import SPLITS, read_summary, scores_of, served_column
from smelt.lm.build import REQUEST_TIMEOUT_S

OPTION = "serve"  # how a run directory is named in load_run's messages: "serve runs/x: an eval run, ..."


def load_served_run(run_dir: str, *, task: str | None, lm: str | None, device: str, api_base: str | None,
                    timeout: float, log) -> LoadedRun:
    """The run's program on its model (or ``lm``). DSPy's response cache is off: a request's inputs are written
    nowhere but the --log file, and every answer comes from the model.

    A chat model behind a server (LiteLLM's) waits for a reply a second longer than ``timeout`` (--timeout: the
    request's 504 comes first) and is not retried: its connection then closes (the server stops generating) rather
    than going on, or starting again, for nobody. (The in-process engine and a completion endpoint drop a request's
    calls when it times out: ``smelt.lm.call_scope``.)"""
    _check_task_is_data(run_dir, task)
    loaded = load_run(run_dir, task_name=task, option=OPTION, lm_spec=lm, device=device, api_base=api_base,
                      cache=False, command="serve", log=log)
    if loaded.lm.engine is None and not hasattr(loaded.lm.lm.engine, "complete"):  # LiteLLM: not one of smelt's
        loaded.lm.lm = loaded.lm.lm.copy(timeout=min(timeout + 1, REQUEST_TIMEOUT_S), num_retries=0)
    return loaded


def _check_task_is_data(run_dir: str, task: str | None) -> None:
    """A run whose task is Python code is served only when the user names that task (--task), as ``run`` does;
    said here with the ``serve`` command line that works."""
    if task is not None:
        return
    source = python_task_source(run_dir, OPTION)
    if source is not None:
        raise SmeltError(f"{run_dir}: its task is Python code ({source}), which a run directory never runs by "
                         f"itself; name it to serve it: python cli.py serve {run_dir} --task {source}")


def program_summary(loaded: LoadedRun) -> dict:
    """What the program is: its command, options, and each predictor's instructions and number of demos."""
    predictors = [{"name": name, "instructions": predictor.signature.instructions, "demos": len(predictor.demos)}
                  for name, predictor in loaded.program.named_predictors()]
    manifest = loaded.manifest
    return {"command": manifest.get("command"), "optimizer": manifest.get("optimizer"),
            "program_options": manifest.get("program_options") or {}, "predictors": predictors}


def model_summary(loaded: LoadedRun) -> dict:
    """The model answering (as a manifest records it: spec, device, adapter; never a key) and its id for
    ``/v1/chat/completions``."""
    return {"id": model_id(loaded), **loaded.lm.describe()}


def model_id(loaded: LoadedRun) -> str:
    """The served model's name in OpenAI-compatible replies: the DSPy model name, which carries the dtype and an
    adapter's digest for an in-process model (``gemma-3-270m@float32+lora-…``)."""
    return loaded.lm.lm.model.removeprefix("smelt/")


def measured_scores(run_dir: Path) -> dict:
    """The scores the run measured (summary.json): the metric, {column: {split: score}} for each column the command
    wrote (baseline and compiled; teacher, student (no adapter) and distilled student; a sweep's best and default
    trials), and ``served``: the column of the program served (compiled, distilled student, the sweep's best
    trial), its split (test if measured) and score. A score that is not a finite number is left out. Empty for a run
    that has not finished."""
    summary = read_summary(run_dir)
    columns = scores_of(summary)
    if not columns:
        return {}
    metric = summary.get("metric")
    measured = {"metric": metric if isinstance(metric, str) else None, "scores": columns}
    served = served_column(summary, columns)
    if served is not None:
        split = next(split for split in SPLITS if split in columns[served])
        measured["served"] = {"column": served, "split": split, "score": columns[served][split]}
    return measured
