"""A user's two-step task, on the public API only: find the sentence of a short notice that answers the question,
then answer from that sentence alone.

Its program has two predictors. Gold answers can teach only the second step (no gold sentence is given), so a
distilled student learns the first step from the teacher's passing traces alone. Data: notices.jsonl beside it (60
three-sentence notices of fictional facilities, each with a question and a short answer), split 40/20/40.
"""

from dataclasses import dataclass
from pathlib import Path

import dspy

from smelt import Splits, Task, load_records, seeded_split


class NoticeQuestion(dspy.Signature):
    """Answer the question about the notice in a few words."""

    notice: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


class FindSentence(dspy.Signature):
    """Copy the one sentence of the notice that answers the question."""

    notice: str = dspy.InputField()
    question: str = dspy.InputField()
    sentence: str = dspy.OutputField()


class AnswerFromSentence(dspy.Signature):
    """Answer the question in a few words, using only the sentence."""

    sentence: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


@dataclass(frozen=True)
class NoticeOptions:
    sentence_tokens: int = 40
    answer_tokens: int = 12


class FindThenAnswer(dspy.Module):
    def __init__(self, options: NoticeOptions):
        super().__init__()
        self.find = dspy.Predict(FindSentence, max_tokens=options.sentence_tokens)
        self.answer = dspy.Predict(AnswerFromSentence, max_tokens=options.answer_tokens)

    def forward(self, notice, question):
        sentence = self.find(notice=notice, question=question).sentence
        return self.answer(sentence=sentence, question=question)


def load_data() -> Splits:
    path = Path(__file__).with_name("notices.jsonl")
    examples = [dspy.Example(**row).with_inputs("notice", "question") for _, row in load_records(path)]
    train, dev, test = seeded_split(examples, seed=0)
    return Splits(train, dev, test, {"train": str(path), "dev": str(path), "test": str(path)})


task = Task(name="two_step_notices", description="Find the sentence of a notice that answers a question, then answer.",
            signature=NoticeQuestion, make_program=FindThenAnswer, options=NoticeOptions, load_data=load_data,
            metric="f1")
