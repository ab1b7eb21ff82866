"""Synthetic training questions: a teacher writes new questions about a document; a judge checks answers."""

import dspy


class WriteQuestion(dspy.Signature):
    """Write one new question that the document answers with a short phrase, in the document's language.
    Ask about a different fact than the example questions."""

    document: str = dspy.InputField()
    example_questions: str = dspy.InputField(desc="questions already asked about this document")
    question: str = dspy.OutputField(desc="one question, in the document's language")


class JudgeGroundedAnswer(dspy.Signature):
    """Rate from 0 to 10 how well the answer is supported by the document and answers the question.
    10: correct, short, taken from the document, in the question's language. 0: wrong, invented or empty."""

    document: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.InputField()
    rating: int = dspy.OutputField(desc="an integer from 0 to 10")
