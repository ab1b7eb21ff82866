"""Document question answering: document + question -> answer."""

import dspy

UNANSWERABLE_EN = "The document does not say."
UNANSWERABLE_JA = "文書に記載がありません。"

_INSTRUCTIONS = f"""Answer the question using only the document.
Reply with a short phrase taken from the document, in the language of the question.
If the document does not contain the answer, reply exactly "{UNANSWERABLE_EN}" for an English question
or exactly "{UNANSWERABLE_JA}" for a Japanese question. Never invent a fact."""


class AnswerAfterDocument(dspy.Signature):
    __doc__ = _INSTRUCTIONS

    document: str = dspy.InputField(desc="the document, or the passages of it most related to the question")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="a short answer in the question's language")


class AnswerBeforeDocument(dspy.Signature):
    # The same task with the question placed before the document.
    __doc__ = _INSTRUCTIONS

    question: str = dspy.InputField()
    document: str = dspy.InputField(desc="the document, or the passages of it most related to the question")
    answer: str = dspy.OutputField(desc="a short answer in the question's language")
