"""rag_qa without a model: the shipped collection and questions, retrieval, inline citations, and their scores."""

import dspy
import pytest

from smelt.optimizers.distill.sft_examples import example_rows
from smelt.programs.citations import citation_precision, citation_recall, cited_ids, recall_at_k, split_citations
from smelt.programs.registry import get_task

TASK = get_task("rag_qa")


def test_shipped_data_meets_its_description():
    splits = TASK.shipped_data()
    everything = splits.train + splits.dev + splits.test
    assert [len(s) for s in (splits.train, splits.dev, splits.test)] == [48, 24, 36]
    documents = TASK.program().collection_path
    from smelt.programs.rag_qa import load_collection

    collection = dict(load_collection(documents))
    assert len(collection) >= 40
    assert sum(e.language == "ja" for e in everything) == sum(e.language == "en" for e in everything)
    unanswerable = [e for e in everything if e.kind == "unanswerable"]
    assert len(unanswerable) >= 0.1 * len(everything) and all(e.citations == "none" for e in unanswerable)
    assert sum(len(e.doc_ids) == 2 for e in everything) >= 10  # questions needing two documents
    for example in everything:
        if example.kind == "single":  # extractive answers appear in the cited document
            import unicodedata

            text = unicodedata.normalize("NFKC", collection[example.doc_ids[0]]).lower()
            assert unicodedata.normalize("NFKC", example.answer).lower() in text, example.id


def test_retrieval_finds_the_cited_documents():
    program, splits = TASK.program(), TASK.shipped_data()
    hits = total = 0
    for example in splits.dev + splits.test:
        passages, retrieved = program.retrieve(example.question)
        assert passages.startswith("[r") and len(retrieved) <= program.options.top_k
        hits += len(set(retrieved) & set(example.doc_ids))
        total += len(example.doc_ids)
    assert hits / total >= 0.9  # measured 0.99 over all 108 questions at top_k 3


def test_split_citations():
    known = {"r01", "r17", "r23"}
    assert split_citations("9:00 a.m. [r01]", known) == ("9:00 a.m.", ["r01"])
    assert split_citations("1,300円 [r23, r17] [r01]", known) == ("1,300円", ["r23", "r17", "r01"])
    assert split_citations("Room [B] 2 [r99]", known) == ("Room [B] 2 [r99]", [])  # unknown ids stay in the text
    assert split_citations("The documents do not say.", known) == ("The documents do not say.", [])


def test_citation_scores():
    assert cited_ids("r01, r17") == {"r01", "r17"} and cited_ids("none") == set() and cited_ids(["r01"]) == {"r01"}
    assert citation_precision({"r01", "r02"}, {"r01"}) == 0.5
    assert citation_precision(set(), set()) == 1.0  # unanswerable, nothing cited: right
    assert citation_precision({"r01"}, set()) == 0.0  # unanswerable, a document cited: wrong
    assert citation_precision(set(), {"r01"}) == 0.0
    assert citation_recall({"r01"}, {"r01", "r02"}) == 0.5 and citation_recall(set(), set()) is None
    assert recall_at_k(["r01", "r01", "r03"], {"r01", "r02"}) == 0.5 and recall_at_k(["r01"], set()) is None


def test_extra_scores_of_a_prediction():
    example = dspy.Example(question="q", answer="a", citations="r01, r02").with_inputs("question")
    scores = TASK.extra_scores(example, dspy.Prediction(answer="a", citations="r01", retrieved=["r01", "r05"]))
    assert scores == {"citation_precision": 1.0, "citation_recall": 0.5, "retrieval_recall_at_k": 0.5}
    failed = TASK.extra_scores(example, None)
    assert failed["citation_precision"] == 0.0 and failed["retrieval_recall_at_k"] is None
    assert TASK.extra_scores(example.without("citations"), dspy.Prediction(answer="a")) == {}


def test_demos_and_sft_rows_show_passages_and_inline_citations():
    program = TASK.program()
    example = TASK.shipped_data().train[0]
    demo = TASK.as_demo(program, example)
    assert demo.cited_answer == f"{example.answer} [{example.citations}]" and demo.passages.startswith("[r")
    [row] = example_rows(TASK, program, example, {"answer": "1,200 yen", "citations": "r01"}, "teacher", False)
    assert "[[ ## passages ## ]]" in row["messages"][0]["content"]
    assert row["completion"] == "1,200 yen [r01]\n\n[[ ## completed ## ]]"


@pytest.mark.parametrize("question", ["How much is the fee per item for items over 2 m?", "粗大ごみの料金は？"])
def test_the_program_cites_only_known_documents(question):
    from dspy.utils.dummies import DummyLM

    program = TASK.program()
    with dspy.context(lm=DummyLM([{"cited_answer": "1,200 yen [r01] [x9]"}])):
        prediction = program(question=question)
    assert prediction.answer == "1,200 yen [x9]" and prediction.citations == "r01"
    assert len(prediction.retrieved) == program.options.top_k
