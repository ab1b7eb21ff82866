"""``distill --teacher-attempts N``: the teacher tries a train input again when its answer misses.

Attempt 1 is the teacher as it is: greedy, its answers cached (a compile run's teacher repeats what it said). Attempts
2..N sample at ``--teacher-temperature``, each with its own DSPy ``rollout_id`` (and, in process, its own seed), so
DSPy's response cache keys every attempt apart instead of handing back the first answer. An attempt runs only on the
inputs no earlier attempt passed (``reached``); an input stops at its first passing trace.

In a program with several predictors (rewrite a query, then answer) a passing trace is what teaches the first steps:
gold answers stand in for the last step only. More attempts give those steps more traces to learn from.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

# One: with the embedded model as its own teacher, more attempts swapped gold answers for weaker passing ones and
# lowered the student's F1 (docs/benchmarks.md, "Teacher attempts"). Worth more with a teacher that can pass.
DEFAULT_TEACHER_ATTEMPTS = 1
DEFAULT_TEACHER_TEMPERATURE = 0.7


def reached(record: dict | None, min_score: float) -> bool:
    """The teacher's answer in ``record`` teaches: it answered, and its score reached ``min_score``."""
    return bool(record and record.get("prediction") and record.get("score", 0) >= min_score)


def attempt_lm(resolved, attempt: int, temperature: float, seed: int):
    """The teacher's model for ``attempt``: itself for the first; for a later one a copy that samples at
    ``temperature`` under rollout id ``attempt - 1`` (a seed too for an in-process model, whose engine then samples
    the same way on every run; a server may refuse one)."""
    if attempt == 1:
        return resolved
    settings = {"temperature": temperature, "rollout_id": attempt - 1}
    if getattr(resolved, "engine", None) is not None:
        settings["seed"] = seed * 1000 + attempt
    return replace(resolved, lm=resolved.lm.copy(**settings))


def attempt_name(attempt: int) -> str:
    """The records file of an attempt, under the run's ``eval/``: ``teacher.train`` for the first (as before
    attempts existed, so a resumed run finds its answers), ``teacher.train.attempt-K`` after."""
    return "teacher.train" if attempt == 1 else f"teacher.train.attempt-{attempt}"


def attempted_records(train: list, run_attempt: Callable[[int, list], list[dict]], *, attempts: int,
                      min_score: float) -> list[dict]:
    """One record per train input that got one: its first passing attempt's, else its last attempt's, each with
    ``attempt`` (1-based) set. ``run_attempt(attempt, examples)`` runs the teacher on ``examples`` and returns their
    records."""
    chosen: dict[str, dict] = {}
    todo = list(train)
    for attempt in range(1, attempts + 1):
        if not todo:
            break
        by_id = {str(r["id"]): r for r in run_attempt(attempt, todo)}
        for example in todo:
            record = by_id.get(str(example.get("id")))
            if record is not None:
                chosen[str(example.get("id"))] = {**record, "attempt": attempt}
        todo = [ex for ex in todo if not reached(by_id.get(str(ex.get("id"))), min_score)]
    return [chosen[str(ex.get("id"))] for ex in train if str(ex.get("id")) in chosen]


def attempts_account(rows: list[dict], train_size: int, *, attempts: int, temperature: float) -> dict:
    """What the teacher's attempts gave, read from the SFT rows (each teacher row names its attempt): the train
    inputs, those a teacher trace was kept for and at which attempt, and the teacher's runs on train (a kept input
    ran up to its attempt, any other all ``attempts``)."""
    kept_at = {str(r.get("id")): int(r.get("attempt") or 1) for r in rows if r.get("source") == "teacher"}
    by_attempt = Counter(kept_at.values())
    return {"max": attempts, "temperature": temperature, "inputs": train_size, "kept": len(kept_at),
            "kept_by_attempt": {str(k): by_attempt.get(k, 0) for k in range(1, attempts + 1)},
            "runs": sum(kept_at.values()) + (train_size - len(kept_at)) * attempts}
