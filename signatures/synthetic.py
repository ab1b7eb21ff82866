"""Synthetic training inputs, built from a task's own fields: a teacher writes a new value of the task's last
input field (the question, the inquiry) beside the others; a judge rates the teacher's output without a
reference."""

import dspy

JUDGE_UNREFERENCED = """Rate from 0 to 10 how correct the output is for these inputs, and how well it is supported by
them. 10: correct, short, supported, in the language of the inputs. 0: wrong, invented or empty."""


def write_input_signature(task) -> type[dspy.Signature]:
    """context fields + the values already written -> one new value of the written field."""
    *context, written = task.input_fields
    fields = {name: (str, dspy.InputField()) for name in context}
    fields["examples"] = (str, dspy.InputField(desc=f"{written} values already written, one per line"))
    fields[written] = (str, dspy.OutputField(desc=f"one new {written}"))
    instructions = (f"Write one new {written} for this task, in the same language and style as the examples, "
                    f"about something the examples do not already cover.\nThe task: {task.description}")
    return dspy.Signature(fields, instructions)


class JudgeUnreferenced(dspy.Signature):
    __doc__ = JUDGE_UNREFERENCED

    task_inputs: str = dspy.InputField(desc="the inputs, one per line as name: value")
    output: str = dspy.InputField(desc="the output to rate")
    rating: int = dspy.OutputField(desc="an integer from 0 to 10")
