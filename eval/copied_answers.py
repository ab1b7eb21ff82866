"""Whether an answer is mostly its input's own text: a program that repeats its input states no fact its source
lacks, so grounding alone would rate it best. The report's grounding axis (smelt.eval.reports.chart_data) counts
such an answer as no evidence of grounding.

An answer *repeats its input* when at least ``COPIED_SHARE`` of its characters lie in runs of ``MIN_RUN`` or more
characters copied verbatim from one of the inputs, it is at least ``MIN_CHARS`` long, and, where a reference answer
is known, it is at least ``LONGER_THAN_REFERENCE`` times as long as the reference: a short extract that is the
answer (a fee, a date, a phrase quoted from the document) is not a copy; the first sentence of the notice given
back is.
"""

from __future__ import annotations

import difflib

COPIED_SHARE = 0.8
MIN_RUN = 8
MIN_CHARS = 20
LONGER_THAN_REFERENCE = 1.5


def copied_share(answer: str, source: str) -> float:
    """The share of ``answer``'s characters inside runs of at least ``MIN_RUN`` characters that ``source`` holds
    verbatim (whitespace runs count as one space in both)."""
    answer, source = " ".join(answer.split()), " ".join(source.split())
    if not answer:
        return 0.0
    matcher = difflib.SequenceMatcher(None, answer, source, autojunk=False)
    copied, spans = 0, [(0, len(answer))]
    while spans:  # the longest copied run of each stretch of the answer, then the stretches left and right of it
        low, high = spans.pop()
        match = matcher.find_longest_match(low, high, 0, len(source))
        if match.size >= MIN_RUN:
            copied += match.size
            spans += [(low, match.a), (match.a + match.size, high)]
    return copied / len(answer)


def repeats_input(answer, inputs, reference=None) -> bool:
    """Whether ``answer`` is mostly a copy of one of ``inputs`` (a dict of the example's inputs, or one text)."""
    text = " ".join(str(answer or "").split())
    if len(text) < MIN_CHARS:
        return False
    if isinstance(reference, str) and reference.strip() and len(text) < LONGER_THAN_REFERENCE * len(reference.strip()):
        return False
    sources = inputs.values() if isinstance(inputs, dict) else [inputs]
    return any(copied_share(text, str(source)) >= COPIED_SHARE for source in sources if source)
