"""The task registry: a task is a name, a program factory, its data and its default metric."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dspy

from smelt.errors import SmeltError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    make_program: Callable[[dict], dspy.Module]  # options dict -> fresh, uncompiled program
    default_options: Callable[[], dict]
    load_shipped_data: Callable[[], object]  # -> smelt.eval.datasets.Splits
    input_keys: tuple[str, ...]
    required_fields: tuple[str, ...]
    prepare_demo_inputs: Callable[[dspy.Module, dspy.Example], dspy.Example] | None = None


def _doc_qa() -> Task:
    from smelt.programs.doc_qa import DocQA, DocQAOptions

    def prepare(program: DocQA, example: dspy.Example) -> dspy.Example:
        # Demos show the predictor what it really sees: the selected passages, not the whole document.
        short = program.passages(example.document, example.question)
        return example.copy(document=short).with_inputs(*example.inputs().keys())

    def load():
        from smelt.eval.datasets import load_doc_qa_shipped

        return load_doc_qa_shipped(DATA_DIR / "doc_qa")

    return Task(
        name="doc_qa",
        description="Answer a question about a document (Japanese or English), saying so when it cannot.",
        make_program=lambda options: DocQA(DocQAOptions(**options)),
        default_options=lambda: DocQAOptions().to_dict(),
        load_shipped_data=load,
        input_keys=("document", "question"),
        required_fields=("document", "question", "answer"),
        prepare_demo_inputs=prepare,
    )


_TASKS: dict[str, Callable[[], Task]] = {"doc_qa": _doc_qa}


def task_names() -> list[str]:
    return list(_TASKS)


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise SmeltError(f"unknown task {name!r}; known tasks: {', '.join(_TASKS)} (see `cli.py tasks`)")
    return _TASKS[name]()
