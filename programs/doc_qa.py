"""DocQA: answer a question about a document, retrieving passages when the document is long."""

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dspy

from smelt.errors import SmeltError
from smelt.programs.data_files import load_records
from smelt.programs.datasets import Splits
from smelt.programs.field_mapping import to_rows
from smelt.programs.predictors import Predictor, check_predictor, make_predictor
from smelt.programs.registry import DATA_DIR
from smelt.programs.retrieval import select_passages
from smelt.programs.task import Task
from smelt.signatures.doc_qa import AnswerAfterDocument, AnswerBeforeDocument

Placement = Literal["question_last", "question_first"]
PLACEMENTS = typing.get_args(Placement)


@dataclass(frozen=True)
class DocQAOptions:
    """The knobs a sweep can turn. Recorded in the run manifest so a saved program reloads as built.

    question_last is the default: placing the question after the document scored better on Japanese
    government documents in Recursive's Flow Benchmark (docs/benchmarks.md).
    """

    predictor: Predictor = "predict"
    placement: Placement = "question_last"
    context_chars: int = 600  # documents longer than this are cut down to their best passages
    top_k: int = 2
    chunk_chars: int = 250

    def __post_init__(self):
        check_predictor(self.predictor)
        if self.placement not in PLACEMENTS:
            raise SmeltError(f"-o placement={self.placement}: use one of {', '.join(PLACEMENTS)}")
        for name in ("context_chars", "top_k", "chunk_chars"):
            if getattr(self, name) < 1:
                raise SmeltError(f"-o {name}={getattr(self, name)}: must be a positive integer")



class DocQA(dspy.Module):
    def __init__(self, options: DocQAOptions | None = None):
        super().__init__()
        self.options = options or DocQAOptions()
        signature = AnswerBeforeDocument if self.options.placement == "question_first" else AnswerAfterDocument
        self.answer = make_predictor(signature, self.options.predictor)

    def passages(self, document: str, question: str) -> str:
        """What the predictor sees of the document."""
        o = self.options
        return select_passages(document, question, o.context_chars, o.top_k, o.chunk_chars)

    def forward(self, document: str, question: str) -> dspy.Prediction:
        return self.answer(document=self.passages(document, question), question=question)


def _show_passages(program: DocQA, example: dspy.Example) -> dspy.Example:
    # Demos show the predictor what it really sees: the selected passages, not the whole document.
    short = program.passages(example.document, example.question)
    return example.copy(document=short).with_inputs(*example.inputs().keys())


def load_doc_qa_shipped(data_dir: Path):
    """Load the shipped doc_qa task: questions from {train,dev,test}.jsonl joined with documents.jsonl.

    `data_dir` is the folder holding those files (or its parent, holding a doc_qa/ folder).
    """
    data_dir = Path(data_dir)
    if not (data_dir / "documents.jsonl").exists() and (data_dir / "doc_qa").is_dir():
        data_dir = data_dir / "doc_qa"
    docs_path = data_dir / "documents.jsonl"
    documents: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    for line, doc in to_rows(
        load_records(docs_path), source=str(docs_path), fields={}, input_keys=(), required=("id", "text")
    ):
        if doc["id"] in documents:
            raise SmeltError(
                f"{docs_path}:{line}: duplicate document id {doc['id']!r} "
                f"(first on line {first_line[doc['id']]}); give each document its own id"
            )
        documents[doc["id"]], first_line[doc["id"]] = doc, line

    seen: dict[str, str] = {}  # question id -> "file:line", to catch a question in two splits
    by_split: dict[str, list[dspy.Example]] = {}
    sources = {"documents": str(docs_path)}
    for split in ("train", "dev", "test"):
        path = data_dir / f"{split}.jsonl"
        rows = to_rows(
            load_records(path),
            source=str(path),
            fields={},
            input_keys=("question",),
            required=("id", "doc_id", "question", "answer"),
        )
        examples = []
        for line, row in rows:
            doc = documents.get(row["doc_id"])
            if doc is None:
                raise SmeltError(f"{path}:{line}: unknown doc_id {row['doc_id']!r} (not in documents.jsonl)")
            if row["id"] in seen:
                raise SmeltError(
                    f"{path}:{line}: duplicate question id {row['id']!r} (also at {seen[row['id']]})"
                )
            seen[row["id"]] = f"{path.name}:{line}"
            example = dspy.Example(
                id=row["id"],
                document=doc["text"],
                question=row["question"],
                answer=row["answer"],
                language=row.get("language") or doc.get("language"),
                kind=row.get("kind"),
                doc_id=row["doc_id"],
            )
            examples.append(example.with_inputs("document", "question"))
        by_split[split] = examples
        sources[split] = str(path)
    return Splits(by_split["train"], by_split["dev"], by_split["test"], sources)


def _load_data():
    return load_doc_qa_shipped(DATA_DIR / "doc_qa")


task = Task(
    name="doc_qa",
    description="Answer a question about a document (Japanese or English), saying so when it cannot.",
    signature=AnswerAfterDocument,
    make_program=DocQA,
    options=DocQAOptions,
    load_data=_load_data,
    metric="f1",
    prepare_demo=_show_passages,
    # A small base model gains nothing from chain of thought and pays several times the tokens, so the sweep adds
    # "cot" only for capable models (smelt.optimizers.sweep.space; docs/benchmarks.md).
    sweep_space={
        "predictor": ["predict", "cot"],
        "placement": ["question_last", "question_first"],
        "context_chars": [400, 600, 1000, 1600],
        "top_k": {"low": 1, "high": 4},
        "chunk_chars": [150, 250, 400],
    },
)
