"""BM25 per-query time at 1k, 10k and 100k chunks: rank-bm25 (the reference) against BM25Index and bm25s.

Synthetic chunks of about 60 tokens, alternately English-like (words drawn from a Zipf-distributed
vocabulary of 30,000) and Japanese-like (text drawn from a Zipf over kana and 2,000 kanji, cut into
character bigrams by `retrieval_tokens`); fixed seed. A query is 3 to 8 consecutive tokens of a random
chunk. The reference is rank-bm25's BM25Okapi with Lucene's idf (what smelt used before BM25Index), timed
on get_scores alone; the others' times cover scoring and picking the top 10. "top-10 same" is the share of
queries whose top 10 equals the reference's, in order, ties by lower chunk index. rank-bm25 runs fewer
queries at the larger sizes (--reference-queries at 100k, scaled up for smaller corpora).
Target: at most 5 ms per query at 100k chunks, with the reference's top 10.

    python -m bench.bm25_scale [--sizes 1000 10000 100000] [--queries 300] [--reference-queries 50]
"""

import argparse
import heapq
import math
import os
import platform
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from bench.machine import cpu_name
from smelt.programs.bm25 import BM25Index
from smelt.programs.collection_index import load_or_build
from smelt.programs.text import retrieval_tokens

SEED = 0
ENGLISH_VOCABULARY = 30_000
KANJI = 2_000
ZIPF_EXPONENT = 1.1


class ReferenceBM25(BM25Okapi):
    """rank-bm25's BM25Okapi with Lucene's always-positive idf."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        for word, freq in nd.items():
            self.idf[word] = math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5))


def _zipf(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """`count` draws from ranks 0..size-1 with P(rank r) proportional to 1 / (r + 1) ** ZIPF_EXPONENT."""
    weights = 1 / np.arange(1, size + 1) ** ZIPF_EXPONENT
    return rng.choice(size, size=count, p=weights / weights.sum())


def synthetic_chunks(n: int, rng: np.random.Generator) -> list[str]:
    """n chunk texts, English-like at even positions and Japanese-like at odd ones."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = sorted({"".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(ENGLISH_VOCABULARY * 2)})
    words = [words[i] for i in rng.permutation(len(words))[:ENGLISH_VOCABULARY]]
    hiragana = [chr(c) for c in range(0x3041, 0x3094)]
    kanji = [chr(0x4E00 + int(c)) for c in rng.choice(0x9FFF - 0x4E00, KANJI, replace=False)]
    characters = [(hiragana + kanji)[i] for i in rng.permutation(len(hiragana) + len(kanji))]

    english_lengths = rng.integers(50, 71, (n + 1) // 2)  # words, one token each
    japanese_lengths = rng.integers(51, 72, n // 2)  # characters: one bigram fewer
    english = iter(_zipf(rng, len(words), int(english_lengths.sum())).tolist())
    japanese = iter(_zipf(rng, len(characters), int(japanese_lengths.sum())).tolist())
    chunks = []
    for i in range(n):
        if i % 2 == 0:
            chunks.append(" ".join(words[next(english)] for _ in range(english_lengths[i // 2])))
        else:
            chunks.append("".join(characters[next(japanese)] for _ in range(japanese_lengths[i // 2])))
    return chunks


def synthetic_queries(corpus: list[list[str]], count: int, rng: np.random.Generator) -> list[list[str]]:
    """3 to 8 consecutive tokens of a random chunk each."""
    queries = []
    for _ in range(count):
        tokens = corpus[rng.integers(len(corpus))]
        length = int(rng.integers(3, 9))
        start = int(rng.integers(0, max(1, len(tokens) - length + 1)))
        queries.append(tokens[start : start + length])
    return queries


def reference_top10(scores: np.ndarray) -> list[int]:
    return heapq.nsmallest(10, range(len(scores)), key=lambda i: (-scores[i], i))


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def measure(corpus: list[list[str]], queries: list[list[str]], reference_queries: int) -> list[tuple]:
    """(scorer, build s, ms per query, top-10 same, max relative score difference) for each scorer."""
    rows = []
    reference, build_s = _timed(ReferenceBM25, corpus)
    checked = queries[:reference_queries]
    start = time.perf_counter()
    expected_scores = [reference.get_scores(query) for query in checked]
    ms = (time.perf_counter() - start) / len(checked) * 1000
    expected = [reference_top10(scores) for scores in expected_scores]  # outside the timing: it is the spec
    rows.append(("rank-bm25", build_s, ms, 1.0, 0.0))
    del reference

    def relative(scores: np.ndarray, reference_scores: np.ndarray) -> float:
        return float(np.max(np.abs(scores - reference_scores) / np.maximum(np.abs(reference_scores), 1e-300)))

    index, build_s = _timed(BM25Index, corpus)
    start = time.perf_counter()
    tops = [index.top_k(query, 10) for query in queries]
    ms = (time.perf_counter() - start) / len(queries) * 1000
    same = sum(top == want for top, want in zip(tops, expected, strict=False)) / len(checked)
    worst = max(relative(index.scores(query), want) for query, want in zip(checked, expected_scores, strict=True))
    rows.append(("BM25Index", build_s, ms, same, worst))

    try:
        import bm25s
    except ImportError:
        rows.append(("bm25s", None, None, None, None))
        return rows
    # method "atire" is rank-bm25's term-frequency part; idf_method "lucene" the idf; float64 as rank-bm25.
    retriever = bm25s.BM25(k1=1.5, b=0.75, method="atire", idf_method="lucene", dtype="float64")
    _, build_s = _timed(lambda: retriever.index(corpus, show_progress=False))
    start = time.perf_counter()
    documents, _ = retriever.retrieve(queries, k=10, show_progress=False, n_threads=1)
    ms = (time.perf_counter() - start) / len(queries) * 1000
    same = sum(top.tolist() == want for top, want in zip(documents, expected, strict=False)) / len(checked)
    worst = max(
        relative(retriever.get_scores(query), want) for query, want in zip(checked, expected_scores, strict=True)
    )
    rows.append(("bm25s", build_s, ms, same, worst))
    return rows


def measure_files(corpus: list[list[str]], texts: list[str]) -> None:
    """Save and load of the largest index, and the on-disk collection cache built over the same texts."""
    index = BM25Index(corpus)
    with tempfile.TemporaryDirectory() as folder:
        _, save_s = _timed(index.save, Path(folder) / "index")
        size_mb = sum(path.stat().st_size for path in (Path(folder) / "index").iterdir()) / 1e6
        loaded, load_s = _timed(BM25Index.load, Path(folder) / "index")
        assert np.array_equal(loaded.scores(corpus[0][:5]), index.scores(corpus[0][:5]))
        print(
            f"BM25Index of {len(corpus)} chunks ({index.vocabulary_size} terms): save {save_s:.2f} s, "
            f"load {load_s:.2f} s, {size_mb:.0f} MB on disk"
        )

        documents = [(f"doc{i}", text) for i, text in enumerate(texts)]
        previous = os.environ.get("SMELT_CACHE")
        os.environ["SMELT_CACHE"] = folder
        try:
            collection, cold_s = _timed(lambda: load_or_build(documents, log=lambda message: None))
            _, warm_s = _timed(lambda: load_or_build(documents, log=lambda message: None))
        finally:
            if previous is None:
                del os.environ["SMELT_CACHE"]
            else:
                os.environ["SMELT_CACHE"] = previous
        print(
            f"collection cache, {len(documents)} documents -> {len(collection)} chunks of <= 400 chars: "
            f"first load_or_build (chunk, tokenise, index, save) {cold_s:.1f} s, "
            f"second (hash, load, check) {warm_s:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="corpus sizes")
    parser.add_argument("--queries", type=int, default=300, help="queries per size (default 300)")
    parser.add_argument(
        "--reference-queries", type=int, default=50, help="rank-bm25 queries at 100k chunks (default 50)"
    )
    args = parser.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(
        f"numpy {np.__version__}, rank-bm25 {_package_version('rank-bm25')}, bm25s {_package_version('bm25s')}; "
        f"seed {SEED}, {args.queries} queries of 3-8 tokens per size\n"
    )
    rng = np.random.default_rng(SEED)
    texts = synthetic_chunks(max(args.sizes), rng)
    corpus = [retrieval_tokens(text) for text in texts]
    print(
        f"{'chunks':>7} {'tok/chunk':>9} {'scorer':<10} {'build s':>7} {'ms/query':>9} {'x faster':>8} "
        f"{'top-10 same':>11} {'max rel diff':>12} {'n ref':>5}"
    )
    for size in args.sizes:
        chunks = corpus[:size]
        queries = synthetic_queries(chunks, args.queries, rng)
        reference_queries = min(args.queries, max(1, args.reference_queries * 100_000 // size))
        rows = measure(chunks, queries, reference_queries)
        tokens = sum(map(len, chunks)) / size
        reference_ms = rows[0][2]
        for name, build_s, ms, same, worst in rows:
            if ms is None:
                print(f"{size:>7} {tokens:>9.1f} {name:<10} (not installed)")
                continue
            print(
                f"{size:>7} {tokens:>9.1f} {name:<10} {build_s:>7.2f} {ms:>9.3f} {reference_ms / ms:>8.1f} "
                f"{same:>11.3f} {worst:>12.1e} {reference_queries:>5}"
            )
    print()
    measure_files(corpus, texts)


if __name__ == "__main__":
    main()
