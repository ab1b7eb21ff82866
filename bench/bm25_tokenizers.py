"""Which BM25 tokenisation finds the answer-bearing chunk best, per language, on the shipped doc_qa data.

For every answerable question the document is cut into chunks (100 to 400 chars; at 200 most
documents have several) and ranked against the question with each scheme.
hit@1 / hit@2: a chunk containing the answer (NFKC, case-insensitive substring) is ranked first /
in the top two. "random" is the expected score of picking chunks at random. Questions whose answer
is not verbatim in the document, or whose document is a single chunk, are counted but not scored.

    python -m bench.bm25_tokenizers [--data data/doc_qa] [--chunk-chars 100 200 ...]   # from the repo root
"""

import argparse
import json
import os
import platform
import sys
import time
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from bench.machine import cpu_name as _cpu_name
from smelt.programs.retrieval import rank_chunks, split_into_chunks
from smelt.programs.text import DEFAULT_SCHEME, SCHEMES

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "doc_qa"
SPLITS = ("train", "dev", "test")


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()




@dataclass
class _Tally:
    """Per-language results at one chunk size."""

    hits: dict[str, list[tuple[bool, bool]]] = field(default_factory=lambda: defaultdict(list))
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    chance: list[tuple[float, float]] = field(default_factory=list)  # a random pick's hit@1, hit@2
    chunks: list[int] = field(default_factory=list)


def _measure(
    documents: dict[str, dict], questions: list[dict], chunk_chars: int, skipped: dict[str, int]
) -> dict[str, _Tally]:
    overlap = min(80, chunk_chars // 5)  # as select_passages does
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for q in questions:
        doc = documents[q["doc_id"]]
        language = q.get("language") or doc.get("language") or "?"
        if q.get("kind") == "unanswerable" or not q.get("answer"):
            skipped[f"{language} unanswerable"] += 1
            continue
        chunks = split_into_chunks(doc["text"], chunk_chars, overlap)
        answer = _nfkc(q["answer"]).strip()
        gold = {i for i, chunk in enumerate(chunks) if answer in _nfkc(chunk)}
        if not gold:
            skipped[f"{language} answer not verbatim"] += 1
            continue
        if len(chunks) < 2:
            skipped[f"{language} single chunk at {chunk_chars} chars"] += 1
            continue
        tally = tallies[language]
        n, g = len(chunks), len(gold)
        tally.chance.append((g / n, 1 - (n - g) * (n - g - 1) / (n * (n - 1))))
        tally.chunks.append(n)
        for scheme in SCHEMES:
            start = time.perf_counter()
            ranking = rank_chunks(chunks, q["question"], scheme)
            tally.seconds[scheme] += time.perf_counter() - start
            tally.hits[scheme].append((ranking[0] in gold, bool(gold & set(ranking[:2]))))
    return tallies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder with documents.jsonl and splits")
    parser.add_argument("--chunk-chars", type=int, nargs="+", default=[100, 150, 200, 300, 400])
    args = parser.parse_args()

    missing = [
        p
        for p in [args.data / "documents.jsonl", *(args.data / f"{s}.jsonl" for s in SPLITS)]
        if not p.exists()
    ]
    if missing:
        print(f"missing data: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    documents = {doc["id"]: doc for doc in _read_jsonl(args.data / "documents.jsonl")}
    questions = [q for split in SPLITS for q in _read_jsonl(args.data / f"{split}.jsonl")]

    print(f"python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}")
    print(f"machine {platform.machine()}, {os.cpu_count()} CPUs, {_cpu_name()}")
    print(f"rank-bm25 {version('rank-bm25')}; default scheme now {DEFAULT_SCHEME!r}")
    print(f"{len(documents)} documents, {len(questions)} questions")

    pooled: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # hit@1, hit@2, n
    for chunk_chars in args.chunk_chars:
        skipped: dict[str, int] = defaultdict(int)
        tallies = _measure(documents, questions, chunk_chars, skipped)
        print(f"\nchunk_chars={chunk_chars}, overlap_chars={min(80, chunk_chars // 5)}")
        for reason, count in sorted(skipped.items()):
            print(f"  not scored: {count} {reason}")
        print(f"{'lang':<5} {'scheme':<8} {'n':>4} {'chunks':>6} {'hit@1':>6} {'hit@2':>6} {'ms/q':>6}")
        for language, tally in sorted(tallies.items()):
            n = len(tally.chunks)
            mean_chunks = sum(tally.chunks) / n
            for scheme in SCHEMES:
                at1 = sum(h1 for h1, _ in tally.hits[scheme])
                at2 = sum(h2 for _, h2 in tally.hits[scheme])
                ms = 1000 * tally.seconds[scheme] / n
                print(
                    f"{language:<5} {scheme:<8} {n:>4} {mean_chunks:>6.1f} "
                    f"{at1 / n:>6.3f} {at2 / n:>6.3f} {ms:>6.2f}"
                )
                total = pooled[language, scheme]
                total[0], total[1], total[2] = total[0] + at1, total[1] + at2, total[2] + n
            r1, r2 = (sum(c[i] for c in tally.chance) / n for i in (0, 1))
            print(f"{language:<5} {'random':<8} {n:>4} {mean_chunks:>6.1f} {r1:>6.3f} {r2:>6.3f}")

    if len(args.chunk_chars) > 1:
        print(f"\npooled over chunk_chars={args.chunk_chars}")
        print(f"{'lang':<5} {'scheme':<8} {'n':>4} {'hit@1':>6} {'hit@2':>6}")
        for (language, scheme), (at1, at2, n) in sorted(pooled.items()):
            print(f"{language:<5} {scheme:<8} {n:>4} {at1 / n:>6.3f} {at2 / n:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
