"""RagQA: answer a question over a whole document collection, citing the documents used.

With ``-o rewrite=true`` the program has two predictors: one rewrites the question into a search query (its key
terms, and other words the documents may use), and retrieval searches for the question and that query together;
then the answer predictor works as below. Retrieval recall@k is that first step's own measure.

BM25 (Japanese-aware, as doc_qa's passages) retrieves the top_k chunks of the collection; the predictor
answers from them, writing the ids of the documents it used in brackets after the answer ("9:00 a.m.
[r03]"): one output field, which a small model follows far more reliably than a second marked field. The
program splits that into ``answer`` and ``citations`` and reports what it retrieved (``retrieved``: the documents'
ids; ``passages``: their text), so evaluation can score citation precision/recall and retrieval recall@k beside
answer F1, and check the answer's facts against the passages (grounding).
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dspy

from smelt.errors import SmeltError
from smelt.programs.citations import (
    NO_CITATION,
    citation_precision,
    citation_recall,
    cited_ids,
    recall_at_k,
    split_citations,
)
from smelt.programs.collection_index import load_or_build
from smelt.programs.data_files import load_records
from smelt.programs.datasets import Splits
from smelt.programs.predictors import Predictor, check_predictor, make_predictor
from smelt.programs.registry import DATA_DIR
from smelt.programs.task import Task
from smelt.signatures.rag_qa import AnswerFromPassages, AskCollection, RewriteQuery

SHIPPED = DATA_DIR / "rag_qa"


@dataclass(frozen=True)
class RagQAOptions:
    """The knobs a sweep can turn. ``collection``: a JSONL file of {"id", "text"} documents to search instead of
    the shipped one."""

    predictor: Predictor = "predict"
    top_k: int = 3  # passages retrieved per question
    chunk_chars: int = 300  # passage size; documents are cut at sentence boundaries
    collection: str = ""
    rewrite: bool = False  # a query-rewrite predictor before retrieval

    def __post_init__(self):
        check_predictor(self.predictor)
        for name in ("top_k", "chunk_chars"):
            if getattr(self, name) < 1:
                raise SmeltError(f"-o {name}={getattr(self, name)}: must be a positive integer")
        if self.collection and not Path(self.collection).is_file():
            raise SmeltError(f"-o collection={self.collection}: no such file; pass a JSONL file of "
                             '{"id": ..., "text": ...} documents')


@cache
def load_collection(path: str) -> tuple[tuple[str, str], ...]:
    """(id, text) of each document in a JSONL file; ids must be unique."""
    documents: dict[str, str] = {}
    for line, record in load_records(path):
        doc_id, text = str(record.get("id") or "").strip(), str(record.get("text") or "")
        if not doc_id or not text.strip():
            raise SmeltError(f"{path}:{line}: a document needs a non-empty \"id\" and \"text\"")
        if doc_id in documents:
            raise SmeltError(f"{path}:{line}: duplicate document id {doc_id!r}; give each document its own id")
        documents[doc_id] = text
    if not documents:
        raise SmeltError(f"{path}: no documents")
    return tuple(documents.items())


@cache
def collection_ids(path: str) -> frozenset[str]:
    return frozenset(doc_id for doc_id, _ in load_collection(path))


@cache
def _index(path: str, chunk_chars: int):
    """One index per collection and chunk size in a process, shared by every copy of the program."""
    return load_or_build(load_collection(path), chunk_chars=chunk_chars, overlap_chars=min(80, chunk_chars // 5),
                         log=lambda message: None)


class RagQA(dspy.Module):
    def __init__(self, options: RagQAOptions | None = None):
        super().__init__()
        self.options = options or RagQAOptions()
        if self.options.rewrite:  # first, so a trace lists the steps in the order they run
            self.rewrite = make_predictor(RewriteQuery, self.options.predictor, max_tokens=32)
        self.answer = make_predictor(AnswerFromPassages, self.options.predictor)

    @property
    def collection_path(self) -> str:
        return self.options.collection or str(SHIPPED / "documents.jsonl")

    def retrieve(self, query: str) -> tuple[str, list[str]]:
        """The passages the predictor sees, each after its [document id], and the ids of their documents."""
        hits = _index(self.collection_path, self.options.chunk_chars).search(query, self.options.top_k)
        return "\n".join(f"[{hit.doc_id}] {hit.text}" for hit in hits), [hit.doc_id for hit in hits]

    def forward(self, question: str) -> dspy.Prediction:
        query = question
        if self.options.rewrite:  # the question's own words stay: a poor rewrite adds terms, it loses none
            query = f"{question}\n{self.rewrite(question=question).search_query}"
        passages, retrieved = self.retrieve(query)
        cited_answer = self.answer(passages=passages, question=question).cited_answer
        answer, cited = split_citations(cited_answer, collection_ids(self.collection_path))
        return dspy.Prediction(answer=answer, citations=", ".join(cited) or NO_CITATION, retrieved=retrieved,
                               passages=passages, search_query=query)


def _as_demo(program: RagQA, example: dspy.Example) -> dspy.Example:
    """The example as the predictor sees it: retrieved passages, and the answer with its citations inline."""
    passages, _ = program.retrieve(example.question)
    ids = sorted(cited_ids(example.get("citations")))
    cited = f"{example.answer} [{', '.join(ids)}]" if ids else example.answer
    return example.copy(passages=passages, cited_answer=cited).with_inputs(*example.inputs().keys())


def _scores(example: dspy.Example, prediction: dspy.Prediction | None) -> dict[str, float | None]:
    if example.get("citations") is None:  # data without reference citations: nothing to score against
        return {}
    reference = cited_ids(example.get("citations"))
    if prediction is None:
        return {"citation_precision": 0.0, "citation_recall": citation_recall(set(), reference),
                "retrieval_recall_at_k": None}
    cited = cited_ids(prediction.get("citations"))
    return {"citation_precision": citation_precision(cited, reference),
            "citation_recall": citation_recall(cited, reference),
            "retrieval_recall_at_k": recall_at_k(list(prediction.get("retrieved") or []), reference)}


def _source(example: dspy.Example, prediction: dspy.Prediction | None) -> str | None:
    """What an answer may draw its facts from: the passages the program retrieved, and the question."""
    passages = prediction.get("passages") if prediction is not None else None
    if passages is None:  # a prediction from elsewhere (a recorded one, a teacher's): nothing to check against
        return None
    return f"{passages}\n{example.get('question') or ''}"


def load_shipped(data_dir: Path = SHIPPED):
    """The shipped questions; each reference's documents become its ``citations`` ('none' if unanswerable)."""
    documents = collection_ids(str(data_dir / "documents.jsonl"))
    seen: dict[str, str] = {}
    by_split = {}
    for split in ("train", "dev", "test"):
        path = data_dir / f"{split}.jsonl"
        examples = []
        for line, row in load_records(path):
            for key in ("id", "question", "answer", "doc_ids"):
                if key not in row:
                    raise SmeltError(f"{path}:{line}: missing field {key!r}")
            if row["id"] in seen:
                raise SmeltError(f"{path}:{line}: duplicate question id {row['id']!r} (also at {seen[row['id']]})")
            seen[row["id"]] = f"{path.name}:{line}"
            unknown = [d for d in row["doc_ids"] if d not in documents]
            if unknown:
                raise SmeltError(f"{path}:{line}: unknown doc_id {unknown[0]!r} (not in documents.jsonl)")
            examples.append(dspy.Example(
                id=row["id"], question=row["question"], answer=row["answer"],
                citations=", ".join(row["doc_ids"]) or NO_CITATION, doc_ids=row["doc_ids"],
                language=row.get("language"), kind=row.get("kind"),
            ).with_inputs("question"))
        by_split[split] = examples
    sources = {"documents": str(data_dir / "documents.jsonl"),
               **{split: str(data_dir / f"{split}.jsonl") for split in by_split}}
    return Splits(by_split["train"], by_split["dev"], by_split["test"], sources)


task = Task(
    name="rag_qa",
    description="Answer a question over a collection of documents (Japanese and English), citing the documents used.",
    signature=AskCollection,
    make_program=RagQA,
    options=RagQAOptions,
    load_data=load_shipped,
    metric="f1",
    prepare_demo=_as_demo,
    extra_scores=_scores,
    source_text=_source,
    sweep_space={"predictor": ["predict", "cot"], "top_k": {"low": 2, "high": 5}, "chunk_chars": [200, 300, 450]},
)
