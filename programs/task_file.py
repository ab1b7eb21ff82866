"""A task declared in a TOML (or YAML) file, no Python:

    name = "inquiry_routing"                      # default: the file name
    description = "Route a citizen's inquiry to the department that handles it."
    signature = "inquiry -> department"           # inputs -> outputs; a field is name or name: TYPE
                                                  # (str, int, float, bool, list[str|int|float|bool])
    instructions = "Pick the one department ..."
    metric = "accuracy"                           # f1, em, accuracy, fact or judge, each also NAME+grounded
                                                  # (default: accuracy with labels, else f1)
    predictor = "predict"                         # or "cot", or "likelihood" (a labeled answer: the label the
                                                  # model finds most likely, calibrated: -o choice=likelihood)
    max_tokens = 16

    [fields.inquiry]
    desc = "a resident's message, in Japanese or English"
    [fields.department]
    desc = "the department that handles it"
    labels = ["taxes", "roads_and_parks"]          # the allowed answers (first output field only)
    format = "label"                              # an output's format: date (YYYY-MM-DD), number, label; or
                                                  # pattern = "REGEX". An answer without it scores 0 (malformed)

    [compile]                                     # compile's defaults for this task (flags override them)
    optimizer = "labeled"
    max_labeled_demos = 6

    [data]                                        # paths relative to this file
    train = "inquiry_routing/train.jsonl"         # or: file = "all.jsonl", split 40/20/40 by seed 0
    dev = "inquiry_routing/dev.jsonl"
    test = "inquiry_routing/test.jsonl"

A mistake is one error naming the file and the key.
"""

import tomllib
import unicodedata
from pathlib import Path
from typing import Any

import dspy

from smelt.errors import SmeltError, shown
from smelt.programs.answer_format import FORMAT_NAMES, AnswerFormat, pattern_format
from smelt.programs.datasets import load_splits
from smelt.programs.decoding_options import DecodingOptions
from smelt.programs.metric_names import GROUNDED, METRIC_NAMES, split_grounded
from smelt.programs.predictors import PREDICTORS
from smelt.programs.signature_program import SignatureProgram, options_with_defaults
from smelt.programs.signature_text import SignatureTextError, parse_signature
from smelt.programs.task import Task
from smelt.programs.text import is_blank, label_key

TOP_KEYS = ("name", "description", "signature", "instructions", "metric", "predictor", "max_tokens", "fields", "data",
            "compile")
COMPILE_KEYS = {"optimizer": str, "max_demos": int, "max_labeled_demos": int}
FIELD_KEYS = ("desc", "prefix", "labels", "format", "pattern")
DATA_KEYS = ("train", "dev", "test", "file")
LIKELIHOOD = "likelihood"  # predictor = "likelihood": a plain predictor with -o choice=likelihood by default
TASK_FILE_PREDICTORS = (*PREDICTORS, LIKELIHOOD)
# Characters a label may not hold: nothing shows them (U+200B, U+FEFF, controls, line separators), so a label with
# one looks like the label without it, yet an answer written as it looks never matches it.
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")


def load_task_file(path_text: str) -> Task:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise SmeltError(f"TASK {path_text}: no such task file")
    spec = _read(path)

    def bad(key: str, what: str) -> SmeltError:
        return SmeltError(f"{path}: {key}: {what}")

    unknown = [key for key in spec if key not in TOP_KEYS]
    if unknown:
        raise bad(_clip(unknown[0]), f"unknown key; a task file takes {', '.join(TOP_KEYS)}")
    signature = _signature(spec, bad)
    signature, labels, formats = _apply_fields(spec.get("fields", {}), signature, bad)
    if labels:
        signature = signature.with_updated_fields(next(iter(signature.output_fields)),
                                                  desc=_with_labels(signature, labels))
    name = _string(spec, "name", bad, path.stem)
    metric = spec.get("metric")
    if metric is not None and (not isinstance(metric, str) or split_grounded(metric)[0] not in METRIC_NAMES):
        raise bad("metric", f"{shown(metric)} is not one of {', '.join(METRIC_NAMES)} (or NAME{GROUNDED})")
    if metric is not None and split_grounded(metric)[0] == "accuracy" and not labels:
        raise bad("metric", "accuracy needs the allowed answers: give fields.<first output>.labels")
    predictor = _string(spec, "predictor", bad, "predict")
    if predictor not in TASK_FILE_PREDICTORS:
        raise bad("predictor", f"{shown(predictor)} is not one of {', '.join(TASK_FILE_PREDICTORS)}")
    likelihood = predictor == LIKELIHOOD
    if likelihood and not labels:
        raise bad("predictor", f'"{LIKELIHOOD}" chooses among the answer\'s labels: give '
                               f"fields.{next(iter(signature.output_fields))}.labels = [...]")
    max_tokens = spec.get("max_tokens", 64)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad("max_tokens", f"{shown(max_tokens)} is not a positive integer")
    options = options_with_defaults(name, "predict" if likelihood else predictor, max_tokens)
    return Task(
        name=name,
        description=_string(spec, "description", bad, f"the task in {path.name}"),
        signature=signature,
        make_program=lambda o: SignatureProgram(signature, o),
        options=options,
        load_data=_data_loader(spec.get("data"), path, signature, labels, bad),
        metric=metric,
        labels=tuple(labels) if labels else None,
        # A label chosen by likelihood follows no reasoning: such a task sweeps how it decodes, not its predictor.
        sweep_space={"choice": ["likelihood", "generate"]} if likelihood else {"predictor": ["predict", "cot"]},
        compile_defaults=_compile_defaults(spec.get("compile", {}), bad),
        source=str(path),
        formats=formats,
        decoding=DecodingOptions(choice="likelihood") if likelihood else DecodingOptions(),
    )


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8-sig")
    kind = "TOML" if path.suffix.lower() == ".toml" else "YAML"
    try:
        data = tomllib.loads(text) if kind == "TOML" else _load_yaml(text, path)
    except SmeltError:
        raise
    except RecursionError:
        raise SmeltError(f"{path}: nested too deeply; a task file is a table of keys, a few levels deep") from None
    except Exception as exc:  # TOML's and YAML's errors carry the line; tomllib also raises ValueError (huge ints)
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise SmeltError(f"{path}: not valid {kind} ({lines[0][:200]})") from None
    if not isinstance(data, dict):
        raise SmeltError(f"{path}: a task file is a table of keys (name, signature, fields, data, ...)")
    return data


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load`` without anchors and aliases: a task file needs none, and nine nested aliases expand to
    hundreds of millions of values (an "alias bomb")."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise SmeltError(f"{path}:{event.start_mark.line + 1}: a YAML alias (*{_clip(event.anchor, 40)}); a "
                                 "task file takes no anchors or aliases: write the value out")
            return super().compose_node(parent, index)

    loader = NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _clip(key: Any, limit: int = 60) -> str:
    """A key of the file as it names the place at fault, cut to ``limit`` characters."""
    text = str(key)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _string(spec: dict, key: str, bad, default: str) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise bad(key, f"expected a non-empty string, got {shown(value)}")
    return value.strip()


def _signature(spec: dict, bad) -> type[dspy.Signature]:
    if "signature" not in spec:
        raise bad("signature", 'missing; give a DSPy string signature such as "document, question -> answer"')
    text = spec["signature"]
    if not isinstance(text, str) or "->" not in text:
        raise bad("signature", f'{shown(text)} is not a DSPy string signature such as "document, question -> answer"')
    instructions = spec.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad("instructions", "expected a string")
    try:  # never dspy.Signature(text): DSPy's parser imports the names in annotations
        return parse_signature(text, instructions or None)
    except SignatureTextError as exc:
        raise bad("signature", str(exc)) from None


def _apply_fields(fields: Any, signature, bad) -> tuple[type[dspy.Signature], list[str] | None, dict]:
    """The signature with the file's field descriptions, the answer's labels if given, and the outputs' formats."""
    if not isinstance(fields, dict):
        raise bad("fields", "expected a table of [fields.NAME] sections")
    labels, formats = None, {}
    names = [*signature.input_fields, *signature.output_fields]
    answer = next(iter(signature.output_fields))
    for name, entry in fields.items():
        key = f"fields.{_clip(name)}"
        name = unicodedata.normalize("NFC", name) if isinstance(name, str) else None  # as the signature's names are
        if name not in names:
            raise bad(key, f"not a field of the signature; its fields: {', '.join(names)}")
        if not isinstance(entry, dict):
            raise bad(key, "expected a table with desc (and labels for the answer)")
        unknown = [k for k in entry if k not in FIELD_KEYS]
        if unknown:
            raise bad(f"{key}.{_clip(unknown[0])}", f"unknown key; a field takes {', '.join(FIELD_KEYS)}")
        for text_key in ("desc", "prefix"):
            if text_key in entry:
                if not isinstance(entry[text_key], str):
                    raise bad(f"{key}.{text_key}", "expected a string")
                signature = signature.with_updated_fields(name, **{text_key: entry[text_key]})
        if "labels" in entry:
            value = entry["labels"]
            if name != answer:
                raise bad(f"{key}.labels", f"labels belong to the answer, the first output field ({answer})")
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) and not is_blank(v)
                                                                         for v in value):
                raise bad(f"{key}.labels", "expected a list of at least two non-empty strings")
            _check_visible(value, f"{key}.labels", bad)
            keys = [label_key(v) for v in value]  # as the accuracy metric compares them
            for later, key_of_label in enumerate(keys):
                if key_of_label in keys[:later]:
                    first = value[keys.index(key_of_label)]
                    raise bad(f"{key}.labels", f"{shown(value[later])} is listed twice (as {shown(first)}; case, "
                                               "width, spaces, _ and - do not count)")
            if signature.output_fields[name].annotation is not str:
                raise bad(f"{key}.labels", f"labels need a str answer; drop the type of {name} in the signature")
            labels = value
        if "format" in entry or "pattern" in entry:
            formats[name] = _field_format(entry, key, name in signature.output_fields, bad)
    for name, fmt in formats.items():
        if fmt.name == "label" and (name != answer or not labels):
            raise bad(f"fields.{name}.format", f'"label" needs labels on the answer ({answer}): give '
                                               f"fields.{answer}.labels = [...]")
    return signature, labels, formats


def _check_visible(labels: list[str], key: str, bad) -> None:
    """No label holds a character nothing shows: 'billing\\u200b' would read as billing and never match it."""
    for label in labels:
        hidden = next((char for char in label if unicodedata.category(char) in _HIDDEN_CATEGORIES), None)
        if hidden is not None:
            raise bad(key, f"{shown(label)} holds the invisible character {shown(hidden)} "
                           f"(U+{ord(hidden):04X}); remove it")


def _field_format(entry: dict, key: str, is_output: bool, bad) -> AnswerFormat:
    """A field's ``format`` or ``pattern`` (smelt.programs.answer_format), checked now: a bad one is refused when
    the task loads, not when the first answer is scored."""
    if not is_output:
        raise bad(f"{key}.{'format' if 'format' in entry else 'pattern'}", "only an output field has a format")
    if "format" in entry and "pattern" in entry:
        raise bad(f"{key}.pattern", "give format or pattern, not both")
    if "pattern" in entry:
        try:
            return pattern_format(entry["pattern"])
        except ValueError as exc:
            raise bad(f"{key}.pattern", str(exc)) from None
    if entry["format"] not in FORMAT_NAMES:
        raise bad(f"{key}.format", f"{shown(entry['format'])} is not one of {', '.join(FORMAT_NAMES)} (or give "
                                   "pattern = \"REGEX\")")
    return AnswerFormat(entry["format"])


def _with_labels(signature, labels: list[str]) -> str:
    desc = signature.output_fields[next(iter(signature.output_fields))].json_schema_extra.get("desc", "")
    listed = "one of: " + ", ".join(labels)
    return f"{desc.rstrip('.')}; {listed}" if desc and not desc.startswith("${") else listed


def _compile_defaults(table: Any, bad) -> dict:
    """The [compile] table's types; whether its optimizer exists is checked where optimizers live
    (``smelt.optimizers.prompt.check_task_defaults``), before compile loads a model."""
    if not isinstance(table, dict):
        raise bad("compile", "expected a table with optimizer, max_demos, max_labeled_demos")
    for key, value in table.items():
        if key not in COMPILE_KEYS:
            raise bad(f"compile.{_clip(key)}", f"unknown key; compile takes {', '.join(COMPILE_KEYS)}")
        wrong_type = not isinstance(value, COMPILE_KEYS[key]) or isinstance(value, bool)
        if wrong_type or (isinstance(value, int) and value < 0):
            kind = "name" if key == "optimizer" else "count (0 or more)"
            raise bad(f"compile.{key}", f"{shown(value)} is not a {kind}")
    return dict(table)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL character
        return False


def _data_loader(data: Any, path: Path, signature, labels: list[str] | None, bad):
    if data is None:
        return None
    if not isinstance(data, dict):
        raise bad("data", "expected a table with train, dev and test (or file)")
    unknown = [k for k in data if k not in DATA_KEYS]
    if unknown:
        raise bad(f"data.{_clip(unknown[0])}", f"unknown key; data takes {', '.join(DATA_KEYS)}")
    for key, value in data.items():
        if not isinstance(value, str) or not _is_file(path.parent / value):
            raise bad(f"data.{key}", f"{shown(value)}: no such file (paths are relative to {path.parent})")
    splits = [k for k in ("train", "dev", "test") if k in data]
    if "file" in data and splits:
        raise bad("data.file", "give either file (split 40/20/40) or train, dev and test")
    if "file" not in data and len(splits) != 3:
        missing = [k for k in ("train", "dev", "test") if k not in data]
        raise bad(f"data.{missing[0]}", "missing; give train, dev and test together (or one file)")
    files = {k: str(path.parent / v) for k, v in data.items()}
    inputs, answer = tuple(signature.input_fields), next(iter(signature.output_fields))

    def load():
        return load_splits(data=files.get("file"), train=files.get("train"), dev=files.get("dev"),
                           test=files.get("test"), fields={}, input_keys=inputs, required=(*inputs, answer), seed=0,
                           labels={answer: tuple(labels)} if labels else None)

    return load
