"""The decoding options (``smelt.programs.decoding_options``) applied to a freshly built program: its predictors'
answers held to the task's declarations (``answer_constraint``), and a label task's choice by likelihood
(``label_choice``)."""

import dspy

from smelt.errors import SmeltError
from smelt.programs.answer_constraint import constrain_answers
from smelt.programs.decoding_options import DecodingOptions
from smelt.programs.label_choice import choose_labels_by_likelihood


def apply_decoding_options(program: dspy.Module, task, decoding: DecodingOptions) -> dspy.Module:
    """``program`` decoding as ``decoding`` says; refuses a choice the task cannot take, naming the option."""
    if decoding.choice == "likelihood" and not task.answer_labels:
        raise SmeltError(f"-o choice=likelihood: task {task.name} declares no labels for its answer "
                         f"({task.answer_field}); it needs labels=... (a task file's `labels`) to choose among")
    if decoding.constrain:
        program = constrain_answers(program, task)
    if decoding.choice == "likelihood":
        program = choose_labels_by_likelihood(program, task)
    return program
