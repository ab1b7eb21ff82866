"""Deprecated: moved to ``smelt.programs.citations``; this path goes away in 0.3."""

import warnings

from smelt.programs import citations as _moved
from smelt.programs.citations import *  # noqa: F403 - the old path keeps every public name

warnings.warn("smelt.eval.citations moved to smelt.programs.citations; import from there — the old path "
              "goes away in 0.3", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):  # the rest (a name star-import leaves out) from the new module too
    return getattr(_moved, name)
