"""Fit long documents into a prompt budget: sentence-aware chunking and BM25 passage selection."""

import re

from smelt.errors import SmeltError
from smelt.programs.bm25 import BM25Index
from smelt.programs.text import DEFAULT_SCHEME, retrieval_tokens

PASSAGE_SEPARATOR = "\n...\n"

# A sentence ends after Japanese 。！？ (plus closing brackets), after ASCII . ! ? followed by
# whitespace (so 3.14 and example.com stay whole), or at a newline.
_SENTENCE_END = re.compile(r"[。！？]+[」』）)\"”]*|[.!?]+[\"')\]”’]*(?=\s|$)|\n")


def _sentence_spans(document: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, with surrounding whitespace trimmed and blank ones dropped."""
    spans = []
    start = 0
    cuts = [m.end() for m in _SENTENCE_END.finditer(document)] + [len(document)]
    for end in cuts:
        segment = document[start:end]
        if segment.strip():
            lead = len(segment) - len(segment.lstrip())
            trail = len(segment) - len(segment.rstrip())
            spans.append((start + lead, end - trail))
        start = end
    return spans


def _split_long(document: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Cut an over-long sentence into pieces of at most `limit` chars, at a space when one is near."""
    pieces = []
    while end - start > limit:
        cut = start + limit
        space = document.rfind(" ", start + limit // 2, cut + 1)
        if space > start:
            cut = space
        pieces.append((start, cut))
        start = cut
        while start < end and document[start].isspace():
            start += 1
    if start < end:
        pieces.append((start, end))
    return pieces


def chunk_spans(document: str, chunk_chars: int = 400, overlap_chars: int = 80) -> list[tuple[int, int]]:
    """(start, end) offsets of the chunks `split_into_chunks` returns."""
    if chunk_chars <= 0:
        raise SmeltError(f"chunk_chars must be positive, got {chunk_chars}")
    if not 0 <= overlap_chars < chunk_chars:
        raise SmeltError(f"overlap_chars must be between 0 and chunk_chars - 1, got {overlap_chars}")
    sentences = []
    for start, end in _sentence_spans(document):
        sentences.extend(_split_long(document, start, end, chunk_chars))

    chunks: list[tuple[int, int]] = []
    current: list[tuple[int, int]] = []
    for sentence in sentences:
        if current and sentence[1] - current[0][0] > chunk_chars:
            chunks.append((current[0][0], current[-1][1]))
            # Carry whole trailing sentences (up to overlap_chars) into the next chunk, if they fit.
            carried: list[tuple[int, int]] = []
            for prev in reversed(current):
                if current[-1][1] - prev[0] > overlap_chars or sentence[1] - prev[0] > chunk_chars:
                    break
                carried.insert(0, prev)
            current = carried
        current.append(sentence)
    if current:
        chunks.append((current[0][0], current[-1][1]))
    return chunks


def split_into_chunks(document: str, chunk_chars: int = 400, overlap_chars: int = 80) -> list[str]:
    """Split on sentence and paragraph boundaries into chunks of at most `chunk_chars`.

    Sentences are only cut when one alone exceeds `chunk_chars`. Consecutive chunks share whole
    trailing sentences totalling at most `overlap_chars`.
    """
    return [document[start:end] for start, end in chunk_spans(document, chunk_chars, overlap_chars)]


def rank_chunks(chunks: list[str], question: str, scheme: str = DEFAULT_SCHEME) -> list[int]:
    """Chunk indices, best BM25 match for the question first; ties keep document order.

    BM25 with Lucene's always-positive idf (see `BM25Index`): plain Okapi idf is zero or below for any
    term in half the chunks or more, so with two chunks no term could score.
    """
    corpus = [retrieval_tokens(chunk, scheme) for chunk in chunks]
    return BM25Index(corpus).top_k(retrieval_tokens(question, scheme), len(chunks))


def select_passages(
    document: str,
    question: str,
    budget_chars: int,
    top_k: int,
    chunk_chars: int = 400,
    scheme: str = DEFAULT_SCHEME,
) -> str:
    """Return the document if it fits `budget_chars`, else its `top_k` chunks most relevant to the question.

    Chosen chunks keep document order; overlapping neighbours are merged and gaps are marked with
    "\\n...\\n". The result holds at most about `top_k * chunk_chars` characters and is never empty.
    """
    if top_k < 1:
        raise SmeltError(f"top_k must be at least 1, got {top_k}")
    if len(document) <= budget_chars:
        return document
    spans = chunk_spans(document, chunk_chars, min(80, chunk_chars // 5))
    if not spans:
        return document
    ranking = rank_chunks([document[start:end] for start, end in spans], question, scheme)
    chosen = sorted(spans[i] for i in ranking[:top_k])
    merged = [chosen[0]]
    for start, end in chosen[1:]:
        if not document[merged[-1][1] : start].strip():  # overlapping or back to back
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return PASSAGE_SEPARATOR.join(document[start:end] for start, end in merged)
