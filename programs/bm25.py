"""BM25 over a fixed collection as a numpy inverted index: rank-bm25's scores, fast at 100k chunks.

The scores are those of rank-bm25's ``BM25Okapi`` (k1=1.5, b=0.75, each query token counted as often as it
occurs) with Lucene's always-positive idf log(1 + (N - n + 0.5) / (n + 0.5)): Okapi's own
log((N - n + 0.5) / (n + 0.5)) is zero or below for a term in half the chunks or more, so among two
chunks no term could score.

Each term's contribution to each chunk holding it is computed once, at build, with the same floating-point
operations in the same order as rank-bm25, so the scores match it bit for bit. A query then touches only
the postings of its own terms, where rank-bm25 walks every chunk in Python for every token
(docs/benchmarks.md).

On disk an index is a directory: the raw statistics (postings, term frequencies, chunk lengths) in
an uncompressed ``.npz`` read without pickle, and the vocabulary and parameters in JSON.
"""

import json
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from smelt.errors import SmeltError

FORMAT = "smelt-bm25"
FORMAT_VERSION = 1
_ARRAYS = "postings.npz"
_META = "bm25.json"


class BM25Index:
    """BM25 scores and top-k rankings of a fixed list of tokenised chunks.

    Build it from token lists (``retrieval_tokens`` of each chunk), query it with token lists; chunks are
    numbered by their position in the corpus.
    """

    def __init__(self, corpus: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75) -> None:
        vocabulary: dict[str, int] = {}
        term_ids = np.fromiter(
            (vocabulary.setdefault(token, len(vocabulary)) for chunk in corpus for token in chunk), dtype=np.int64
        )
        doc_lengths = np.fromiter((len(chunk) for chunk in corpus), dtype=np.int64, count=len(corpus))
        n = len(doc_lengths)
        # One sort groups the tokens by (term, chunk): postings come out term by term, chunks ascending.
        pairs, term_freqs = np.unique(term_ids * n + np.repeat(np.arange(n), doc_lengths), return_counts=True)
        offsets = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        np.cumsum(np.bincount(pairs // max(n, 1), minlength=len(vocabulary)), out=offsets[1:])
        self._setup(list(vocabulary), offsets, pairs % max(n, 1), term_freqs, doc_lengths, k1, b)

    def _setup(
        self,
        vocabulary: list[str],
        offsets: np.ndarray,
        doc_ids: np.ndarray,
        term_freqs: np.ndarray,
        doc_lengths: np.ndarray,
        k1: float,
        b: float,
    ) -> None:
        self.k1, self.b = float(k1), float(b)
        self._terms = vocabulary
        self._vocabulary = dict(zip(vocabulary, range(len(vocabulary)), strict=True))
        if len(self._vocabulary) != len(vocabulary):
            raise ValueError("vocabulary has duplicate terms")
        self._offsets = offsets.astype(np.int64, copy=False)
        self._doc_ids = doc_ids.astype(np.int32, copy=False)
        self._term_freqs = term_freqs.astype(np.int32, copy=False)
        self._doc_lengths = doc_lengths.astype(np.int32, copy=False)
        # Each impact (a term's score in one chunk) is computed with rank-bm25's expressions, operand for
        # operand, so that it has the same bits.
        n = len(doc_lengths)
        total = int(self._doc_lengths.sum(dtype=np.int64))
        doc_freqs = np.diff(self._offsets)
        # math.log, not np.log (whose SIMD kernels may round differently), once per distinct document frequency.
        distinct, which = np.unique(doc_freqs, return_inverse=True)
        idf = np.array([math.log(1 + (n - df + 0.5) / (df + 0.5)) for df in distinct.tolist()], dtype=np.float64)
        if total:
            avgdl = total / n
            norm = self.k1 * (1 - self.b + self.b * self._doc_lengths / avgdl)
            tf = self._term_freqs
            tfc = tf * (self.k1 + 1) / (tf + norm[self._doc_ids])
            self._impacts = np.repeat(idf[which], doc_freqs) * tfc
        else:  # no tokens at all, so no postings (rank-bm25 would divide 0 by 0 here)
            self._impacts = np.zeros(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._doc_lengths)

    @property
    def vocabulary_size(self) -> int:
        return len(self._terms)

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every chunk (float64, one per chunk); unknown tokens add nothing."""
        scores = np.zeros(len(self), dtype=np.float64)
        offsets = self._offsets
        # Token by token, in query order, repeats included: the additions rank-bm25 makes, in its order.
        for token in query_tokens:
            term = self._vocabulary.get(token)
            if term is not None:
                start, end = offsets[term], offsets[term + 1]
                # Faster than `scores[ids] += impacts` (docs/benchmarks.md).
                np.add.at(scores, self._doc_ids[start:end], self._impacts[start:end])
        return scores

    def top_k(self, query_tokens: Sequence[str], k: int) -> list[int]:
        """The k best chunks, best first; equal scores keep chunk order."""
        return top_indices(self.scores(query_tokens), k)

    def save(self, directory: str | Path) -> None:
        """Write the index into `directory` (created if needed): arrays in an .npz, vocabulary in JSON."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / _ARRAYS,
            offsets=self._offsets,
            doc_ids=self._doc_ids,
            term_freqs=self._term_freqs,
            doc_lengths=self._doc_lengths,
        )
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "k1": self.k1, "b": self.b, "vocabulary": self._terms}
        (directory / _META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "BM25Index":
        """Read an index written by `save`. Raises FileNotFoundError if a file is missing, SmeltError if invalid."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / _META).read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
                raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} index")
            vocabulary, k1, b = meta["vocabulary"], float(meta["k1"]), float(meta["b"])
            # Zip members carry a CRC-32 that is checked as each array is read, so flipped bytes fail here.
            with np.load(directory / _ARRAYS, allow_pickle=False) as arrays:
                offsets, doc_ids, term_freqs, doc_lengths = (
                    arrays[name] for name in ("offsets", "doc_ids", "term_freqs", "doc_lengths")
                )
            _check(vocabulary, offsets, doc_ids, term_freqs, doc_lengths)
            index = cls.__new__(cls)
            index._setup(vocabulary, offsets, doc_ids, term_freqs, doc_lengths, k1, b)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise SmeltError(f"invalid BM25 index in {directory}: {exc}") from exc
        return index


def _check(
    vocabulary: list, offsets: np.ndarray, doc_ids: np.ndarray, term_freqs: np.ndarray, doc_lengths: np.ndarray
) -> None:
    """Raise ValueError unless the arrays form a consistent index (so a damaged one is never scored)."""
    if not (isinstance(vocabulary, list) and set(map(type, vocabulary)) <= {str}):
        raise ValueError("vocabulary is not a list of strings")
    arrays = {"offsets": offsets, "doc_ids": doc_ids, "term_freqs": term_freqs, "doc_lengths": doc_lengths}
    for name, array in arrays.items():
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise ValueError(f"{name} is not a 1-D integer array")
    postings = len(doc_ids)
    if len(offsets) != len(vocabulary) + 1 or offsets[0] != 0 or offsets[-1] != postings:
        raise ValueError("offsets do not match the vocabulary and postings")
    if len(term_freqs) != postings or np.any(np.diff(offsets) < 1):
        raise ValueError("postings are misaligned")
    if postings and (doc_ids.min() < 0 or doc_ids.max() >= len(doc_lengths) or term_freqs.min() < 1):
        raise ValueError("a posting is out of range")
    if doc_lengths.size and doc_lengths.min() < 0:
        raise ValueError("negative chunk length")
    if int(term_freqs.sum(dtype=np.int64)) != int(doc_lengths.sum(dtype=np.int64)):
        raise ValueError("term frequencies do not add up to the chunk lengths")
    # A term lists each chunk holding it once, in increasing order, as the build writes it.
    starts = np.zeros(postings, dtype=bool)
    starts[offsets[:-1][offsets[:-1] < postings]] = True
    if np.any((np.diff(doc_ids.astype(np.int64)) <= 0) & ~starts[1:]):
        raise ValueError("chunk ids within a term are not strictly increasing")


def top_indices(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k highest scores, best first, ties by lower index.

    The same list as ``sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]``, without sorting
    every score: only those at or above the k-th best are sorted.
    """
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return []
    if k < n:
        kth_best = np.partition(scores, n - k)[n - k]
        candidates = np.flatnonzero(scores >= kth_best)  # every tie at the cut-off, in index order
    else:
        candidates = np.arange(n)
    order = np.argsort(-scores[candidates], kind="stable")[:k]
    return candidates[order].tolist()
