"""An LLM judge that rates a task's output against the reference output, seeing the task's inputs."""

import dspy


class JudgeOutput(dspy.Signature):
    """Rate how well the output matches the reference output for these inputs, from 0 to 10.

    Take the reference as perfect. 10: same meaning as the reference. Extra relevant detail is not a flaw.
    A wrong, missing or contradicting fact is a major flaw. An output in another language than the
    reference is a major flaw (at most 3). An empty output gets 0. If the reference says the answer is not
    available, any output that states a fact instead gets at most 2."""

    task_inputs: str = dspy.InputField(desc="the inputs the output was written for, one per line as name: value")
    reference: str = dspy.InputField(desc="the correct output")
    output: str = dspy.InputField(desc="the output to rate")
    rationale: str = dspy.OutputField(desc="one or two sentences: what matches the reference and what does not")
    rating: int = dspy.OutputField(desc="an integer from 0 to 10")


class JudgeCriterion(dspy.Signature):
    """Rate the output on one criterion only, from 0 to 10, against the reference output for these inputs.

    10: fully meets the criterion. 0: fails it entirely. Judge nothing but the criterion named."""

    criterion: str = dspy.InputField(desc="the criterion, as name: what it asks")
    task_inputs: str = dspy.InputField(desc="the inputs the output was written for, one per line as name: value")
    reference: str = dspy.InputField(desc="the correct output")
    output: str = dspy.InputField(desc="the output to rate")
    rationale: str = dspy.OutputField(desc="one sentence on this criterion")
    rating: int = dspy.OutputField(desc="an integer from 0 to 10")
