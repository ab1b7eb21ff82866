"""SFT examples from a DSPy program: each one is the exact prompt the zero-shot student sends at inference (its
predictor's signature through smelt's prefill chat adapter, no demos) and the completion it should learn."""

import dspy

from smelt.errors import SmeltError
from smelt.lm.prefill_adapter import PrefillChatAdapter, field_marker


def only_predictor(program: dspy.Module):
    predictors = program.predictors()
    if len(predictors) != 1:
        raise SmeltError(f"distill supports programs with one predictor; this program has {len(predictors)}")
    return predictors[0]


def sft_messages(program: dspy.Module, inputs: dict, instructions: bool = False) -> list[dict]:
    """The chat messages the zero-shot student program sends for these predictor inputs."""
    return PrefillChatAdapter(instructions=instructions).format(only_predictor(program).signature, [], inputs)


def sft_completion(signature, outputs: dict) -> str:
    """What the student learns to write after the prefilled marker of the first output field: that field's
    value, then each further field under its own marker, then the completion marker (DSPy's chat format)."""
    values = {name: str(outputs.get(name, "")).strip() for name in signature.output_fields}
    text = PrefillChatAdapter().format_assistant_message_content(signature, values)
    return text.removeprefix(field_marker(next(iter(signature.output_fields))) + "\n").rstrip("\n")


def sft_rows(task, student_program, train, records: list[dict], *, min_score: float, use_labels: bool,
             instructions: bool) -> list[dict]:
    """SFT rows from the teacher's scored records on ``train``: its answers reaching ``min_score``, else (with
    ``use_labels``) the gold answer; an example with neither is left out."""
    by_id = {str(r["id"]): r for r in records}
    rows = []
    for example in train:
        record = by_id.get(str(example.get("id")))
        gold = {name: example.get(name) for name in task.output_fields}
        if record and record.get("prediction") and record["score"] >= min_score:
            outputs, source = {task.answer_field: record["prediction"], **(record.get("outputs") or {})}, "teacher"
        elif use_labels and all(value not in (None, "") for value in gold.values()):
            outputs, source = gold, "label"
        else:
            continue
        rows.append(sft_row(task, student_program, example, outputs, source, instructions))
    return rows


def sft_row(task, program, example, outputs: dict, source: str, instructions: bool) -> dict:
    """One SFT example: the student's prompt for this example's inputs, and the outputs to learn (both as the
    task's predictor names them: ``Task.as_demo``)."""
    prepared = task.as_demo(program, example.copy(**outputs))
    signature = only_predictor(program).signature
    inputs = {name: prepared.get(name) for name in signature.input_fields}
    return {"id": example.get("id"), "source": source,
            "messages": sft_messages(program, inputs, instructions),
            "completion": sft_completion(signature, {name: prepared.get(name) for name in signature.output_fields})}
