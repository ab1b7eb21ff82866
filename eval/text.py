"""Deprecated: moved to ``smelt.programs.text``; this path goes away in 0.3."""

import warnings

from smelt.programs import text as _moved
from smelt.programs.text import *  # noqa: F403 - the old path keeps every public name

warnings.warn("smelt.eval.text moved to smelt.programs.text; import from there — the old path "
              "goes away in 0.3", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):  # the rest (a name star-import leaves out) from the new module too
    return getattr(_moved, name)
