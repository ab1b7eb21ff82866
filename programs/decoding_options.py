"""How a program's predictors decode, whatever the task: program options every task takes beside its own.

    constrain  hold each answer to what the task declares (its labels, a format, a pattern) and to the predictor's
               field structure, with a grammar applied while the model generates (``smelt.programs.answer_constraint``)
    choice     for a task with labels: ``generate`` the label, or pick the declared label the model finds most likely,
               calibrated against its prior over the labels (``likelihood``, ``smelt.programs.label_choice``)

They are given as ``-o constrain=false`` / ``-o choice=likelihood`` (or a task file's ``[options]``), are recorded
with the task's own options in the manifest's ``program_options``, and are applied to the program ``Task.program``
builds, so that compile, eval, run, serve and a teacher decode alike.
"""

import dataclasses
from dataclasses import dataclass
from typing import Literal

Choice = Literal["generate", "likelihood"]


@dataclass(frozen=True)
class DecodingOptions:
    constrain: bool = True
    choice: Choice = "generate"


DECODING_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(DecodingOptions))

# A run recorded before these options existed decoded without a constraint: reloaded, it decodes as it was made.
RECORDED_BEFORE_DECODING_OPTIONS = {"constrain": False, "choice": "generate"}


def split_decoding_options(options: dict | None) -> tuple[dict, DecodingOptions]:
    """``options`` as (the task's own options, the decoding options with defaults for those not given)."""
    options = dict(options or {})
    decoding = {name: options.pop(name) for name in DECODING_OPTION_NAMES if name in options}
    return options, DecodingOptions(**decoding)
