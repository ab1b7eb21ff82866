"""DSPy's "LM response was truncated" warnings, counted per thread instead of printed.

DSPy 3.4.1 logs one warning per answer that stopped at max_tokens, on the logger ``dspy.clients.lm``
(``LM._check_truncation`` and ``clients/execution.py:_result``): dozens of lines between the progress bars
of one evaluation. ``install_truncation_filter`` drops those records and counts them for the thread whose
model call was cut; the evaluation loop reads the count around each example (``truncation_count``), flags
the record and reports one line per evaluation.
"""

import logging
import threading

LOGGER_NAME = "dspy.clients.lm"
MESSAGE_PREFIX = "LM response was truncated"

_counts = threading.local()
_install_lock = threading.Lock()


class TruncationFilter(logging.Filter):
    """Drops DSPy's truncation warnings, counting each one for the thread that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not ours to judge
            return True
        if not message.startswith(MESSAGE_PREFIX):
            return True
        _counts.value = getattr(_counts, "value", 0) + 1
        return False


def install_truncation_filter() -> None:
    """Put the filter on DSPy's LM logger, once per process (calling it again does nothing)."""
    logger = logging.getLogger(LOGGER_NAME)
    with _install_lock:
        if not any(isinstance(f, TruncationFilter) for f in logger.filters):
            logger.addFilter(TruncationFilter())


def truncation_count() -> int:
    """How many truncated answers this thread's model calls have had since the filter was installed."""
    return getattr(_counts, "value", 0)
