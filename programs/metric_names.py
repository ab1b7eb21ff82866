"""The names a task, a task file or --metric may give as the metric: the vocabulary, checked before anything loads.
What each one computes lives in smelt.eval (metrics.py, judge.py)."""

METRIC_NAMES = ("f1", "em", "accuracy", "fact", "judge")  # and each of them + GROUNDED
GROUNDED = "+grounded"  # f1+grounded, judge+grounded, ...: an answer with an invented fact scores 0


def split_grounded(name: str) -> tuple[str, bool]:
    """'f1+grounded' -> ('f1', True); 'f1' -> ('f1', False)."""
    return (name.removesuffix(GROUNDED), True) if name.endswith(GROUNDED) else (name, False)
