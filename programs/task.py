"""A task: what smelt compiles, distills and sweeps. It names its fields once, in its signature.

    task = Task(
        name="doc_qa",
        description="Answer a question about a document.",
        signature=AnswerAfterDocument,          # inputs -> outputs of the task as a whole
        make_program=lambda options: DocQA(options),
        options=DocQAOptions,                   # a dataclass: -o key=value, and what a sweep turns
        load_data=load_doc_qa,                  # the shipped train/dev/test Splits (None: --data is needed)
    )

Every stage (evaluation, metrics, the judge, compile, distill, sweep, `run`, reports) reads the field
names from here: the inputs are the signature's input fields, the graded answer is its first output field.
"""

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dspy

from smelt.errors import SmeltError
from smelt.programs.answer_format import AnswerFormat, answer_format, malformed_fields
from smelt.programs.decoding_options import DECODING_OPTION_NAMES, DecodingOptions, split_decoding_options


@dataclass(frozen=True)
class NoOptions:
    """For a task whose program has no knobs."""


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    signature: type[dspy.Signature]
    make_program: Callable[[Any], dspy.Module]  # an instance of `options` -> a fresh, uncompiled program
    options: type = NoOptions
    load_data: Callable[[], Any] | None = None  # -> smelt.programs.datasets.Splits
    metric: str | None = None  # default metric; None: accuracy for a label answer, else f1
    labels: tuple[str, ...] | None = None  # allowed values of the answer; None: from a Literal annotation, if any
    # An example as the program's predictor sees it, for demos and distillation: its inputs and outputs under the
    # predictor's field names (e.g. the retrieved passages beside the question). None: the task's own fields.
    prepare_demo: Callable[[dspy.Module, dspy.Example], dspy.Example] | None = None
    # Scores reported beside the metric, e.g. citation precision: (example, prediction) -> {name: value or None}.
    extra_scores: Callable[[dspy.Example, dspy.Prediction], dict[str, float | None]] | None = None
    sweep_space: dict[str, Any] = field(default_factory=dict)  # option -> choices or {low, high} for a sweep
    # compile's defaults for this task where the user gives none: optimizer, max_demos, max_labeled_demos.
    compile_defaults: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # how to find the task again (a shipped name, path.py:attr, module:attr or a task file)
    # The text an answer must not add facts to (grounding, smelt.eval.fact_matching): (example, prediction) -> text,
    # or None for no check. None here: the text of all the task's inputs (`source_of`). rag_qa: the passages it
    # retrieved.
    source_text: Callable[[dspy.Example, dspy.Prediction | None], str | None] | None = None
    # The format an output field's answer must have (smelt.programs.answer_format): "date" (YYYY-MM-DD), "number",
    # "label" or re.compile(PATTERN), e.g. {"due_date": "date"}. An answer without it scores 0 and counts as malformed.
    formats: dict[str, Any] = field(default_factory=dict)
    # The decoding options' defaults for this task (a task file's predictor = "likelihood": choice=likelihood).
    decoding: DecodingOptions = DecodingOptions()

    def __post_init__(self):
        if not dataclasses.is_dataclass(self.options):
            raise SmeltError(f"task {self.name}: options must be a dataclass, not {self.options!r}")
        taken = sorted({f.name for f in dataclasses.fields(self.options)} & set(DECODING_OPTION_NAMES))
        if taken:
            raise SmeltError(f"task {self.name}: option(s) {', '.join(taken)} of {self.options.__name__} are program "
                             "options every task takes (smelt.programs.decoding_options); rename them")
        if not self.signature.output_fields:
            raise SmeltError(f"task {self.name}: its signature has no output field")
        object.__setattr__(self, "formats", self._checked_formats())  # frozen: set once, as AnswerFormats

    def _checked_formats(self) -> dict[str, AnswerFormat]:
        checked = {}
        for name, value in (self.formats or {}).items():
            if name not in self.signature.output_fields:
                raise SmeltError(f"task {self.name}: formats: {name!r} is not an output field; its output fields: "
                                 f"{', '.join(self.signature.output_fields)}")
            try:
                checked[name] = answer_format(value)
            except ValueError as exc:
                raise SmeltError(f"task {self.name}: formats.{name}: {exc}") from None
            if checked[name].name == "label" and (name != self.answer_field or not self.answer_labels):
                raise SmeltError(f"task {self.name}: formats.{name}: \"label\" needs the task's labels, on its answer "
                                 f"field ({self.answer_field}): give labels=... or a Literal answer")
        return checked

    @property
    def input_fields(self) -> tuple[str, ...]:
        return tuple(self.signature.input_fields)

    @property
    def output_fields(self) -> tuple[str, ...]:
        return tuple(self.signature.output_fields)

    @property
    def answer_field(self) -> str:
        """The output the metric grades: the signature's first output field."""
        return self.output_fields[0]

    @property
    def answer_labels(self) -> tuple[str, ...] | None:
        if self.labels:
            return tuple(self.labels)
        annotation = self.signature.output_fields[self.answer_field].annotation
        if typing.get_origin(annotation) is typing.Literal:
            return tuple(str(value) for value in typing.get_args(annotation))
        return None

    @property
    def default_metric(self) -> str:
        return self.metric or ("accuracy" if self.answer_labels else "f1")

    def source_of(self, example: dspy.Example, prediction: dspy.Prediction | None = None) -> str | None:
        """The source an answer is checked against for invented facts: ``source_text``'s, else the inputs."""
        if self.source_text is not None:
            return self.source_text(example, prediction)
        return "\n".join(str(example.get(name)) for name in self.input_fields if example.get(name) is not None)

    def malformed(self, prediction: dspy.Prediction | None) -> list[str]:
        """The output fields of ``prediction`` without their declared format ([] when all have it)."""
        return malformed_fields(self, prediction)

    def default_options(self) -> dict:
        """Every program option with its default: the task's own, then the decoding ones (``constrain``, ``choice``)."""
        return {**dataclasses.asdict(self.options()), **dataclasses.asdict(self.decoding)}

    def program(self, options: dict | None = None) -> dspy.Module:
        """A fresh program built with these options (missing ones take their defaults), decoding as its decoding
        options say (``smelt.programs.decoding``)."""
        from smelt.programs.decoding import apply_decoding_options

        own, decoding = split_decoding_options({**dataclasses.asdict(self.decoding), **(options or {})})
        known = {f.name for f in dataclasses.fields(self.options)}
        unknown = set(own) - known
        if unknown:
            raise SmeltError(f"task {self.name}: unknown program option(s) {', '.join(sorted(unknown))}; "
                             f"valid: {describe_options(self.options)}")
        return apply_decoding_options(self.make_program(self.options(**own)), self, decoding)

    def as_demo(self, program: dspy.Module, example: dspy.Example) -> dspy.Example:
        return self.prepare_demo(program, example) if self.prepare_demo else example

    def shipped_data(self):
        if self.load_data is None:
            raise SmeltError(f"task {self.name} ships no data; pass --data FILE or --train/--dev/--test files")
        return self.load_data()


def describe_options(options: type) -> str:
    """'predictor (str), top_k (int), constrain (bool), choice (generate | likelihood)' — the valid -o keys and their
    types: the task's own, then the decoding options every task takes."""
    hints = {**typing.get_type_hints(DecodingOptions), **typing.get_type_hints(options)}
    fields = [*dataclasses.fields(options), *dataclasses.fields(DecodingOptions)]
    return ", ".join(f"{f.name} ({_type_name(hints.get(f.name, f.type))})" for f in fields)


def parse_option_pairs(task: Task, pairs: tuple[str, ...] | list[str]) -> dict:
    """``-o key=value`` pairs into typed program options, checked against the task's options dataclass and the
    decoding options every task takes."""
    fields = {f.name: (f, DecodingOptions) for f in dataclasses.fields(DecodingOptions)}
    fields.update({f.name: (f, task.options) for f in dataclasses.fields(task.options)})
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SmeltError(f"-o {pair!r}: expected KEY=VALUE, e.g. -o predictor=cot; "
                             f"valid keys for {task.name}: {describe_options(task.options)}")
        if key not in fields:
            raise SmeltError(f"-o {key}: not an option of task {task.name}; valid: {describe_options(task.options)}")
        found, owner = fields[key]
        options[key] = _convert(key, text.strip(), found.type, owner, task.options)
    return options


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(str(value) for value in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _convert(key: str, text: str, annotation, owner: type, options: type):
    """``text`` as the type ``owner`` (the task's options, or DecodingOptions) gives ``key``."""
    annotation = typing.get_type_hints(owner).get(key, annotation)

    def bad() -> SmeltError:
        return SmeltError(f"-o {key}={text}: expected {_type_name(annotation)}; "
                          f"valid keys and types: {describe_options(options)}")

    if typing.get_origin(annotation) is typing.Literal:
        allowed = typing.get_args(annotation)
        if text not in [str(v) for v in allowed]:
            raise bad()
        return next(v for v in allowed if str(v) == text)
    if annotation is bool:
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
        raise bad()
    if annotation in (int, float):
        try:
            return annotation(text)
        except ValueError:
            raise bad() from None
    return text
