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

from smelt.errors import SmeltError, shown
from smelt.log import to_stderr
from smelt.programs.data_files import deepest_line

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
        raise SmeltError(f"{path}: its predictors ({_names(saved) or 'none'}) are not those of task {task_name}'s "
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
            raise SmeltError(f"{where}: unknown key {shown(unknown[0])}; a program.json holds prompts and demos only "
                             f"({', '.join(PREDICTOR_KEYS[:-1])}): remove it")
        _check_signature(entry.get("signature"), predictor.signature, where, task_name)
        for key in _LISTS:
            if not isinstance(entry.get(key, []), list):
                raise SmeltError(f"{where}: {key} must be a list")
        if not all(isinstance(demo, dict) for demo in entry.get("demos", [])):
            raise SmeltError(f"{where}: every demo must be a JSON object of field values")
        _check_output_settings(entry.get("fields"), predictor.signature, where, task_name)
        if entry.get("lm") is not None:
            dropped.append(name)
        clean[name] = {**{key: entry.get(key, []) for key in _LISTS}, "signature": entry["signature"],
                       **({"fields": entry["fields"]} if entry.get("fields") else {}), "lm": None}
    for name, predictor in predictors.items():  # DSPy's own checks (output settings, signature rebuild), dry run
        try:
            predictor.deepcopy().load_state(clean[name])
        except Exception as exc:
            raise SmeltError(f"{path}: predictor {name!r}: not a predictor smelt can load "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if dropped:
        log(f"[smelt] {path}: ignored the saved model settings (lm) of predictor {', '.join(dropped)}; a program file "
            "never chooses the model")
    try:
        program.load_state(clean)
    except Exception as exc:  # each predictor loaded above: only the program as a whole is left to fail
        raise SmeltError(f"{path}: not a program smelt can load ({type(exc).__name__}: {str(exc)[:200]})") from None
    return program


def _read(path: Path) -> dict:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SmeltError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SmeltError(f"{path}: not a DSPy JSON program ({exc}); programs are saved as JSON, never pickles") \
            from None
    except RecursionError:
        line = deepest_line(path.read_text(encoding="utf-8"))
        raise SmeltError(f"{path}:{line}: nested too deeply; a program.json is DSPy's JSON save of a program's "
                         "prompts and demos") from None
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
    inputs = len(signature.input_fields)
    if len(fields) != len(expected) or [f["prefix"] for f in fields[:inputs]] != expected[:inputs]:
        ours = [prefix.rstrip(":") for prefix in expected]
        raise SmeltError(f"{where}: saved from another task's program (its fields: "
                         f"{_names(f['prefix'].rstrip(':') for f in fields)}; task {task_name}'s: {', '.join(ours)}); "
                         f"pass a run of task {task_name}")


def _check_output_settings(settings, signature, where: str, task_name: str) -> None:
    """A predictor's saved per-output settings (DSPy's ``fields``: thresholds, weights) name outputs of its
    signature: settings saved for outputs the task no longer has would be refused by DSPy without naming the
    predictor, or apply to the wrong answer."""
    if not settings:
        return
    if not isinstance(settings, dict) or not all(isinstance(value, dict) for value in settings.values()):
        raise SmeltError(f"{where}: fields must be a JSON object of output name -> settings")
    outputs = list(signature.output_fields)
    stray = [name for name in settings if name not in outputs]
    if stray:
        raise SmeltError(f"{where}: its saved fields ({_names(settings)}) no longer match the signature (task "
                         f"{task_name}'s outputs: {', '.join(outputs)}); {shown(stray[0])} is not one of them: pass "
                         f"a run of task {task_name} saved with this signature")


def _names(names, most: int = 8) -> str:
    """Names from the file for a message: the first ``most``, each cut to 40 characters, and how many in all."""
    names = list(names)
    listed = ", ".join(name if len(name) <= 40 else name[:37] + "..." for name in map(str, names[:most]))
    return listed + (f", ... ({len(names)} in all)" if len(names) > most else "")
