"""The `predictor` knob every shipped program has: a plain Predict, or ChainOfThought."""

import typing
from typing import Literal

import dspy

from smelt.errors import SmeltError

Predictor = Literal["predict", "cot"]
PREDICTORS = typing.get_args(Predictor)
COT_MIN_TOKENS = 320  # chain of thought writes its reasoning first: a short cap would cut it off


def check_predictor(predictor: str) -> None:
    if predictor not in PREDICTORS:
        raise SmeltError(f"-o predictor={predictor}: use one of {', '.join(PREDICTORS)}")


def make_predictor(signature: type[dspy.Signature], predictor: str, max_tokens: int = 64) -> dspy.Module:
    """Predict capped at ``max_tokens``, or ChainOfThought with room for its reasoning. Answers are short: a cap
    keeps one rambling generation from holding up a whole batch."""
    if predictor == "cot":
        return dspy.ChainOfThought(signature, max_tokens=max(max_tokens, COT_MIN_TOKENS))
    return dspy.Predict(signature, max_tokens=max_tokens)
