"""``run``: one answer from a finished compile or distill run, for inputs given on the command line."""

import sys
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lifecycle import read_manifest
from smelt.lifecycle.recorded_task import task_of_run
from smelt.lifecycle.reloaded_run import load_run
from smelt.lm.call_failure import model_call_failed
from smelt.lm.dspy_settings import configure_dspy
from smelt.programs.answer_format import describe_malformed
from smelt.programs.task_inputs import check_inputs


def read_input_value(name: str, value: str) -> str:
    """``@FILE`` reads a UTF-8 file, ``@-`` standard input; anything else is the value itself."""
    if not value.startswith("@"):
        return value
    path = value[1:]
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    if not file.is_file():
        raise SmeltError(f"--input {name}=@{path}: no such file; pass a UTF-8 text file, or @- for standard input")
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SmeltError(f"--input {name}=@{path}: not UTF-8 text (byte {exc.start}); convert it to UTF-8") from exc


def parse_inputs(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs (``NAME=@FILE`` reads the file, ``NAME=@-`` standard input) into {input field: text}.
    An input given twice is refused (which one was meant?), and so is a second ``@-``: standard input is read once."""
    inputs: dict[str, str] = {}
    stdin_pair: str | None = None
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SmeltError(f"--input {pair!r}: expected NAME=VALUE or NAME=@FILE, e.g. --input question='...'")
        if name in inputs:
            raise SmeltError(f"--input {name}: given twice; keep one")
        if value == "@-":
            if stdin_pair is not None:
                raise SmeltError(f"--input {name}=@-: standard input is already read by --input {stdin_pair}; pass "
                                 "one of them from a file (NAME=@FILE)")
            stdin_pair = f"{name}=@-"
        inputs[name] = read_input_value(name, value)
    return inputs



def _recorded_task(program_run: str, task: str | None):
    """The task of a run that holds a program (a sweep's best trial for a sweep), read from its manifest without
    loading a model; None where ``load_run`` has a better thing to say (an eval run, no best trial, a bad run)."""
    run_dir = Path(program_run)
    manifest = read_manifest(run_dir, "--program")
    if manifest.get("command") == "sweep":
        if not (run_dir / "best" / "manifest.json").is_file():
            return None
        run_dir, manifest = run_dir / "best", read_manifest(run_dir / "best")
    if manifest.get("command") == "eval" or not manifest.get("task"):
        return None
    return task_of_run(manifest, run_dir, given=task, command="run", option="--program")


def answer(program_run: str, inputs: dict[str, str], *, task: str | None = None, lm: str | None = None,
           device: str = "auto", api_base: str | None = None, log=None) -> dict[str, str]:
    """The run's program on ``inputs`` (checked against its task's input fields): {output field: value}.

    A server model is called only where the user says (--api-base; ``log`` hears where). A model call that fails
    (the server down, no API key) is one SmeltError naming it, as ``compile`` and ``eval`` say it.
    """
    configure_dspy(threads=1)
    recorded = _recorded_task(program_run, task)
    if recorded is not None:  # a wrong input is named in a moment, before the model is loaded
        check_inputs(recorded, inputs)
    loaded = load_run(program_run, task_name=task, lm_spec=lm, device=device, api_base=api_base, command="run",
                      log=log)
    check_inputs(loaded.task, inputs)
    prediction = call_program(loaded, inputs)
    malformed = loaded.task.malformed(prediction)
    if malformed and log is not None:
        log(f"[smelt] warning: {describe_malformed(loaded.task, malformed)}, as task {loaded.task.name} declares; "
            "`eval` would score this answer 0")
    return {name: str(prediction.get(name, "")).strip() for name in loaded.task.output_fields}


def call_program(loaded, inputs: dict):
    """The reloaded run's program on ``inputs`` (checked): its ``dspy.Prediction``. An answer that cannot be read,
    or a model call that fails, is one SmeltError (``run`` and ``smelt.load_run(...).predict`` alike)."""
    from dspy.utils.exceptions import AdapterParseError

    try:
        with loaded.lm.context():
            return loaded.program(**inputs)
    except AdapterParseError as exc:
        raise SmeltError(f"the model's output could not be read: {str(exc.lm_response)[:200]!r}") from None
    except (SmeltError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a model call that failed: one line, never a traceback
        raise SmeltError(model_call_failed(loaded.lm.spec.raw, exc)) from None
