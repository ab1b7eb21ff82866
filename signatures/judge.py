"""An LLM judge that rates an answer against a reference answer."""

import dspy


class JudgeAnswer(dspy.Signature):
    """Rate how well the answer matches the reference answer to the question, from 0 to 10.

    Take the reference answer as perfect. 10: same meaning as the reference. Extra relevant detail is not
    a flaw. A wrong, missing or contradicting fact is a major flaw. An answer in another language than the
    reference is a major flaw (at most 3). An empty answer gets 0. If the reference says the document does
    not contain the answer, any answer that states a fact instead gets at most 2."""

    question: str = dspy.InputField()
    reference: str = dspy.InputField(desc="the correct answer")
    answer: str = dspy.InputField(desc="the answer to rate")
    rationale: str = dspy.OutputField(desc="one or two sentences: what matches the reference and what does not")
    rating: int = dspy.OutputField(desc="an integer from 0 to 10")
