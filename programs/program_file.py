"""Loading a program.json: prompts and demos only, checked against the program they are loaded into.

A program.json is data a user may have been handed. DSPy's own ``Module.load`` would set any key of a predictor's
saved state as an attribute (``config`` becomes the model call's keyword arguments) and rebuild a saved ``lm``
(model, provider, sampling parameters). Here only the keys DSPy writes for prompts and demos are taken; a saved
``lm`` is dropped (the model is always the one the user or the run names) and said once; anything else is refused
with one line naming the file, the predictor and the key.
"""

import json
from pathlib import Path

import dspy

from smelt.errors import SmeltError
from smelt.log import to_stderr

# What DSPy 3.4's Predict.dump_state writes; everything but ``lm`` is prompt text, demos or their traces.
PREDICTOR_KEYS = ("traces", "train", "demos", "signature", "fields", "lm")
_LISTS = ("traces", "train", "demos")


def load_program_file(program: dspy.Module, path: str | Path, *, task_name: str, log=None) -> dspy.Module:
    """Load ``path`` into ``program`` (built by task ``task_name``'s factory) and return it. ``log`` (default:
    stderr) hears about a dropped saved model; a file of another program, or with keys beyond prompts and demos, is
    refused."""
    log = log or to_stderr
    path = Path(path)
    state = _read(path)
    predictors = dict(program.named_predictors())
    saved = {name: value for name, value in state.items() if name != "metadata"}
    if set(saved) != set(predictors):
        raise SmeltError(f"{path}: its predictors ({', '.join(saved) or 'none'}) are not those of task {task_name}'s "
                         f"program ({', '.join(predictors)}); it was saved from another program: pass a run of task "
                         f"{task_name}")
    clean, dropped = {}, []
    for name, predictor in predictors.items():
        entry = saved[name]
        where = f"{path}: predictor {name!r}"
        if not isinstance(entry, dict):
            raise SmeltError(f"{where}: expected a JSON object (DSPy's saved state), got {type(entry).__name__}")
        unknown = [key for key in entry if key not in PREDICTOR_KEYS]
        if unknown:
            raise SmeltError(f"{where}: unknown key {unknown[0]!r}; a program.json holds prompts and demos only "
                             f"({', '.join(PREDICTOR_KEYS[:-1])}): remove it")
        _check_signature(entry.get("signature"), predictor.signature, where, task_name)
        for key in _LISTS:
            if not isinstance(entry.get(key, []), list):
                raise SmeltError(f"{where}: {key} must be a list")
        if not all(isinstance(demo, dict) for demo in entry.get("demos", [])):
            raise SmeltError(f"{where}: every demo must be a JSON object of field values")
        if entry.get("lm") is not None:
            dropped.append(name)
        clean[name] = {**{key: entry.get(key, []) for key in _LISTS}, "signature": entry["signature"],
                       **({"fields": entry["fields"]} if entry.get("fields") else {}), "lm": None}
    if dropped:
        log(f"[smelt] {path}: ignored the saved model settings (lm) of predictor {', '.join(dropped)}; a program file "
            "never chooses the model")
    try:
        program.load_state(clean)
    except Exception as exc:  # DSPy's own checks (fields state, signature rebuild)
        raise SmeltError(f"{path}: not a program smelt can load ({type(exc).__name__}: {exc})") from None
    return program


def _read(path: Path) -> dict:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SmeltError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SmeltError(f"{path}: not a DSPy JSON program ({exc}); programs are saved as JSON, never pickles") \
            from None
    if not isinstance(state, dict):
        raise SmeltError(f"{path}: not a DSPy JSON program (expected an object of predictors, got "
                         f"{type(state).__name__})")
    return state


def _check_signature(saved, signature, where: str, task_name: str) -> None:
    """The saved prompt fits the predictor: instructions text, one entry per field, and the same input fields (their
    prefixes; optimizers such as COPRO rewrite only the instructions and the last output's prefix)."""
    fields = saved.get("fields") if isinstance(saved, dict) else None
    if not isinstance(saved, dict) or not isinstance(saved.get("instructions"), str) or not isinstance(fields, list) \
            or not all(isinstance(f, dict) and isinstance(f.get("prefix"), str)
                       and isinstance(f.get("description"), str) for f in fields):
        raise SmeltError(f"{where}: signature must hold instructions and one {{prefix, description}} per field")
    expected = [field.json_schema_extra["prefix"] for field in signature.fields.values()]
    shown = [f["prefix"].rstrip(":") for f in fields]
    inputs = len(signature.input_fields)
    if len(fields) != len(expected) or [f["prefix"] for f in fields[:inputs]] != expected[:inputs]:
        ours = [prefix.rstrip(":") for prefix in expected]
        raise SmeltError(f"{where}: saved from another task's program (its fields: {', '.join(shown)}; task "
                         f"{task_name}'s: {', '.join(ours)}); pass a run of task {task_name}")
