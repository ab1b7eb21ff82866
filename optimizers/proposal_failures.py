"""Failed proposals during optimization, counted into one line instead of printed one by one.

DSPy 3.4.1 reports a proposal its prompt model could not write through ``logging``, on the optimizer's own logger,
which DSPy prints to stderr:

- GEPA (logger ``dspy.teleprompt.gepa.gepa``, GEPA's engine logging through DSPy's ``LoggerAdapter``): "Batched
  reflection failed (...); retrying per task.", then the whole traceback as one record, then "Per-task reflection
  failed: ..." when the retry fails too; "Iteration N: Proposed new text for NAME: ..." for a proposal made.
- SIMBA (logger ``dspy.teleprompt.simba``): "Batch N: Invoking strategy: append_a_rule", then "Strategy failed
  with error: ..." when the prompt model's advice was unreadable.

``counting_failed_proposals`` puts a filter on exactly those loggers for the duration of one compile: it drops the
failure records (the tracebacks with them) and counts them; every other record goes through as before.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

GEPA_LOGGER = "dspy.teleprompt.gepa.gepa"
SIMBA_LOGGER = "dspy.teleprompt.simba"


@dataclass
class ProposalTally:
    """Proposals an optimizer asked its prompt model for, and how many of them failed."""

    asked: int = 0
    failed: int = 0
    counted: bool = False  # the optimizer ran and reports its failures where they can be counted (gepa, simba)

    def as_dict(self) -> dict[str, int] | None:
        return {"asked": self.asked, "failed": self.failed} if self.counted else None


class _Counting(logging.Filter):
    def __init__(self, tally: ProposalTally):
        super().__init__()
        self.tally = tally
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not ours to judge
            return True
        with self.lock:
            return self.judge(message)

    def judge(self, message: str) -> bool:
        """Count ``message``; False drops it."""
        raise NotImplementedError


class _GepaReflection(_Counting):
    _MADE = re.compile(r"Iteration \d+: Proposed new text for ")

    def judge(self, message: str) -> bool:
        if message.startswith("Per-task reflection failed") or (
                message.startswith("Iteration ") and "Exception building reflective dataset" in message):
            self.tally.asked += 1
            self.tally.failed += 1
            return False
        if message.startswith(("Batched reflection failed", "Traceback (most recent call last)")):
            return False  # retried per task: counted there
        if self._MADE.match(message):
            self.tally.asked += 1
        return True


class _SimbaRules(_Counting):
    def __init__(self, tally: ProposalTally):
        super().__init__(tally)
        self.rule = False  # the strategy now running asks the prompt model for a rule

    def judge(self, message: str) -> bool:
        _, invoking, strategy = message.partition("Invoking strategy: ")
        if invoking:
            self.rule = strategy.startswith("append_a_rule")
            self.tally.asked += self.rule
            return True
        if message.startswith("Strategy failed with error") and self.rule:
            self.tally.failed += 1
            return False
        return True


# optimizer -> (the logger its failed proposals are reported on, the filter that counts them)
_COUNTED = {"gepa": (GEPA_LOGGER, _GepaReflection), "simba": (SIMBA_LOGGER, _SimbaRules)}


@contextmanager
def counting_failed_proposals(optimizer: str) -> Iterator[ProposalTally]:
    """While inside, ``optimizer``'s failed proposals are counted into the tally it yields, not printed."""
    tally = ProposalTally()
    if optimizer not in _COUNTED:
        yield tally
        return
    name, counting = _COUNTED[optimizer]
    tally.counted = True
    logger, installed = logging.getLogger(name), counting(tally)
    logger.addFilter(installed)
    try:
        yield tally
    finally:
        logger.removeFilter(installed)
