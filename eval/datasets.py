"""Deprecated: moved to ``smelt.programs.datasets``; this path goes away in 0.3."""

import warnings

from smelt.programs import datasets as _moved
from smelt.programs.datasets import *  # noqa: F403 - the old path keeps every public name

warnings.warn("smelt.eval.datasets moved to smelt.programs.datasets; import from there (or from smelt) — the old path "
              "goes away in 0.3", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):  # the rest (a name star-import leaves out) from the new module too
    return getattr(_moved, name)
