"""DSPy's global settings as every smelt command runs with them."""

import dspy

from smelt.lm.truncation import install_truncation_filter


def configure_dspy(threads: int) -> None:
    """Global DSPy settings for a command: failures are recorded per example, never fatal; DSPy's per-answer
    "LM response was truncated" warnings are counted (and reported once per evaluation), not printed."""
    dspy.configure(max_errors=10**9, num_threads=threads)
    install_truncation_filter()
