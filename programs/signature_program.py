"""The program of a task declared without Python: one predictor over the task's signature."""

from dataclasses import dataclass, field, make_dataclass

import dspy

from smelt.errors import SmeltError
from smelt.programs.predictors import Predictor, check_predictor, make_predictor


@dataclass(frozen=True)
class PredictOptions:
    predictor: Predictor = "predict"
    max_tokens: int = 64  # a cap on the output, so that one rambling generation cannot hold up a batch

    def __post_init__(self):
        check_predictor(self.predictor)
        if self.max_tokens < 1:
            raise SmeltError(f"-o max_tokens={self.max_tokens}: must be a positive integer")


def options_with_defaults(name: str, predictor: str, max_tokens: int) -> type:
    """PredictOptions with a task file's own defaults (a subclass, so validation is shared)."""
    return make_dataclass(f"{name}_options", [("predictor", Predictor, field(default=predictor)),
                                              ("max_tokens", int, field(default=max_tokens))],
                          bases=(PredictOptions,), frozen=True)


class SignatureProgram(dspy.Module):
    def __init__(self, signature: type[dspy.Signature], options: PredictOptions):
        super().__init__()
        self.options = options
        self.predict = make_predictor(signature, options.predictor, options.max_tokens)

    def forward(self, **inputs) -> dspy.Prediction:
        return self.predict(**inputs)
