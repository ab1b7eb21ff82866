"""Question answering over a document collection: retrieved passages + question -> answer citing documents."""

import dspy

UNANSWERABLE_EN = "The documents do not say."
UNANSWERABLE_JA = "文書に記載がありません。"


class AskCollection(dspy.Signature):
    """Answer a question from a collection of documents, citing the documents used."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="a short answer in the question's language")
    citations: str = dspy.OutputField(desc="ids of the documents the answer comes from, comma-separated, or none")


class RewriteQuery(dspy.Signature):
    """Rewrite the question as a search query for a keyword search over the documents: its key terms, in the
language of the question, with other words the documents may use for them."""

    question: str = dspy.InputField()
    search_query: str = dspy.OutputField(desc="key terms, separated by spaces, in the question's language")


class AnswerFromPassages(dspy.Signature):
    __doc__ = f"""Answer the question using only the passages. Each passage starts with its document id in brackets.
Reply with a short phrase taken from the passages, in the language of the question, followed by the id of each
document you used in brackets, e.g. 9:00 a.m. [r03]. If the passages do not contain the answer, reply exactly
"{UNANSWERABLE_EN}" for an English question or exactly "{UNANSWERABLE_JA}" for a Japanese question, with no id.
Never invent a fact."""

    passages: str = dspy.InputField(desc="passages retrieved from the collection, each after its [document id]")
    question: str = dspy.InputField()
    cited_answer: str = dspy.OutputField(desc="a short answer in the question's language, then [document id]s")
