"""SFT examples from a DSPy program: each one is the exact prompt the zero-shot student sends at inference (a
predictor's signature through smelt's prefill chat adapter, no demos) and the completion it should learn.

A program with several predictors (rewrite a query, then answer) gives one example per predictor call along the
teacher's path on a train input (its recorded trace), each in that predictor's own prompt; one adapter learns them
all, as DSPy's BootstrapFinetune trains one student on every predictor's traces."""

import dspy

from smelt.errors import SmeltError
from smelt.eval.program_trace import predictor_name
from smelt.lm.prefill_adapter import PrefillChatAdapter, field_marker
from smelt.optimizers.distill.teacher_attempts import reached


def only_predictor(program: dspy.Module):
    predictors = program.predictors()
    if len(predictors) != 1:
        raise SmeltError(f"this step supports programs with one predictor; this program has {len(predictors)}")
    return predictors[0]


def sft_messages(program: dspy.Module, inputs: dict, instructions: bool = False, predictor=None) -> list[dict]:
    """The chat messages the zero-shot student program sends for these inputs of ``predictor`` (default: the
    program's only one)."""
    signature = (predictor or only_predictor(program)).signature
    return PrefillChatAdapter(instructions=instructions).format(signature, [], inputs)


def sft_completion(signature, outputs: dict) -> str:
    """What the student learns to write after the prefilled marker of the first output field: that field's
    value, then each further field under its own marker, then the completion marker (DSPy's chat format)."""
    values = {name: str(outputs.get(name, "")).strip() for name in signature.output_fields}
    text = PrefillChatAdapter().format_assistant_message_content(signature, values)
    return text.removeprefix(field_marker(next(iter(signature.output_fields))) + "\n").rstrip("\n")


def sft_rows(task, student_program, train, records: list[dict], *, min_score: float, use_labels: bool,
             instructions: bool) -> list[dict]:
    """SFT rows from the teacher's scored records on ``train``: its answers reaching ``min_score`` (every step of
    its trace, for a program with several predictors; each row names the record's ``attempt``, 1 when it has none),
    else (with ``use_labels``) the gold answer; an example with neither is left out."""
    by_id = {str(r["id"]): r for r in records}
    rows = []
    for example in train:
        record = by_id.get(str(example.get("id")))
        gold = {name: example.get(name) for name in task.output_fields}
        if reached(record, min_score):
            if record.get("trace"):
                taught = trace_rows(student_program, example, record["trace"], instructions)
            else:
                outputs = {task.answer_field: record["prediction"], **(record.get("outputs") or {})}
                taught = example_rows(task, student_program, example, outputs, "teacher", instructions)
            rows += [{**row, "attempt": record.get("attempt", 1)} for row in taught]
        elif use_labels and all(value not in (None, "") for value in gold.values()):
            rows += example_rows(task, student_program, example, gold, "label", instructions)
    return rows


def example_rows(task, program, example, outputs: dict, source: str, instructions: bool) -> list[dict]:
    """The SFT rows of one example and its outputs, prepared as the task's predictors name them
    (``Task.as_demo``): one row for a one-predictor program; for several, a row for each predictor whose fields
    the prepared example holds (gold answers teach the answering step; a query rewrite has no gold)."""
    prepared = task.as_demo(program, example.copy(**outputs))
    named = program.named_predictors()
    rows = []
    for name, predictor in named:
        signature = predictor.signature
        fields = [*signature.input_fields, *signature.output_fields]
        if len(named) > 1 and any(prepared.get(field) in (None, "") for field in fields):
            continue
        inputs = {field: prepared.get(field) for field in signature.input_fields}
        rows.append(_row(example, source, predictor_name(name), predictor, inputs,
                         {field: prepared.get(field) for field in signature.output_fields}, instructions))
    return rows


def trace_rows(program, example, trace: list[dict], instructions: bool) -> list[dict]:
    """One row per step of the teacher's trace on ``example``, in the student predictor of the same name."""
    predictors = {predictor_name(name): predictor for name, predictor in program.named_predictors()}
    rows = []
    for step in trace:
        predictor = predictors.get(step["predictor"])
        if predictor is None:
            continue
        signature = predictor.signature
        inputs = {field: step["inputs"].get(field) for field in signature.input_fields}
        outputs = {field: step["outputs"].get(field) for field in signature.output_fields}
        if any(value in (None, "") for value in [*inputs.values(), *outputs.values()]):
            continue  # a step that failed to parse teaches nothing
        rows.append(_row(example, "teacher", step["predictor"], predictor, inputs, outputs, instructions))
    return rows


def _row(example, source: str, name: str, predictor, inputs: dict, outputs: dict, instructions: bool) -> dict:
    return {"id": example.get("id"), "source": source, "predictor": name,
            "messages": sft_messages(None, inputs, instructions, predictor=predictor),
            "completion": sft_completion(predictor.signature, outputs)}


def sft_counts_by_predictor(program, rows: list[dict]) -> dict[str, int]:
    """{predictor name: SFT rows that teach it}, every predictor of the student program listed."""
    names = [predictor_name(name) for name, _ in program.named_predictors()]
    return {name: sum(row.get("predictor", names[0]) == name for row in rows) for name in names}
