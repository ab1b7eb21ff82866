"""The program of a task declared without Python: one predictor over the task's signature."""

from dataclasses import dataclass, field, make_dataclass
from typing import Literal

import dspy

from smelt.errors import SmeltError

PREDICTORS = ("predict", "cot")
COT_MIN_TOKENS = 320  # chain of thought writes its reasoning first: a short cap would cut it off


@dataclass(frozen=True)
class PredictOptions:
    predictor: Literal["predict", "cot"] = "predict"
    max_tokens: int = 64  # a cap on the output, so that one rambling generation cannot hold up a batch

    def __post_init__(self):
        if self.predictor not in PREDICTORS:
            raise SmeltError(f"-o predictor={self.predictor}: use one of {', '.join(PREDICTORS)}")
        if self.max_tokens < 1:
            raise SmeltError(f"-o max_tokens={self.max_tokens}: must be a positive integer")


def options_with_defaults(name: str, predictor: str, max_tokens: int) -> type:
    """PredictOptions with a task file's own defaults (a subclass, so validation is shared)."""
    return make_dataclass(f"{name}_options", [("predictor", Literal["predict", "cot"], field(default=predictor)),
                                              ("max_tokens", int, field(default=max_tokens))],
                          bases=(PredictOptions,), frozen=True)


class SignatureProgram(dspy.Module):
    def __init__(self, signature: type[dspy.Signature], options: PredictOptions):
        super().__init__()
        self.options = options
        if options.predictor == "cot":
            self.predict = dspy.ChainOfThought(signature, max_tokens=max(options.max_tokens, COT_MIN_TOKENS))
        else:
            self.predict = dspy.Predict(signature, max_tokens=options.max_tokens)

    def forward(self, **inputs) -> dspy.Prediction:
        return self.predict(**inputs)
