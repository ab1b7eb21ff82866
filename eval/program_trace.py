"""What each predictor of a program saw and said on one example: the trace a multi-step program's distillation
learns from (every predictor's own inputs and outputs along the program's path, as DSPy's BootstrapFinetune
collects them)."""

from contextlib import contextmanager

import dspy


def predictor_name(name: str) -> str:
    """A predictor's name as the student program knows it: ChainOfThought's inner ``answer.predict`` is ``answer``
    (a distilled student answers with a plain Predict under the same attribute)."""
    return name.removesuffix(".predict")


def traced(program: dspy.Module) -> bool:
    """Only programs with several predictors record a trace: one predictor's inputs and outputs are the record's."""
    predictors = getattr(program, "predictors", None)  # a plain callable stands in for a program in some callers
    return callable(predictors) and len(predictors()) > 1


@contextmanager
def recording_trace(program: dspy.Module):
    """Within it, the program's predictor calls in this thread are collected; the yielded list fills in as
    ``[{"predictor": name, "inputs": {...}, "outputs": {...}}, ...]`` when the block ends."""
    steps: list[dict] = []
    if not traced(program):
        yield steps
        return
    names = {id(predictor): predictor_name(name) for name, predictor in program.named_predictors()}
    calls: list = []
    try:
        with dspy.context(trace=calls):
            yield steps
    finally:
        for predictor, inputs, prediction in calls:
            if id(predictor) not in names:
                continue
            signature = predictor.signature
            outputs = {field: prediction.get(field) for field in signature.output_fields}
            steps.append({"predictor": names[id(predictor)],
                          "inputs": {field: inputs.get(field) for field in signature.input_fields},
                          "outputs": {field: None if v is None else str(v) for field, v in outputs.items()}})
