"""BM25 search over the chunks of a document collection, indexed once and cached on disk.

Documents are cut with `chunk_spans` and tokenised with `retrieval_tokens`, as `select_passages` does for
one document. The cache folder, ``cache_root() / "bm25" / key``, is named by a sha256 over the documents,
the chunking parameters, the scheme and the format version, so any change to them gets a fresh index. It
holds the BM25 index and the chunks' (document, start, end) offsets, not their text: the text comes from
the documents the caller passes, which the key proves to be the ones indexed.
"""

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from smelt.errors import SmeltError
from smelt.lm.embedded import cache_root
from smelt.programs.bm25 import BM25Index, top_indices
from smelt.programs.retrieval import chunk_spans
from smelt.programs.text import DEFAULT_SCHEME, retrieval_tokens

FORMAT = "smelt-bm25-collection"
FORMAT_VERSION = 1
_SPANS = "chunks.npz"
_META = "collection.json"


class Hit(NamedTuple):
    doc_id: str
    text: str
    score: float


class CollectionIndex:
    """BM25 over every chunk of a list of (doc_id, text) documents."""

    def __init__(self, documents: Sequence[tuple[str, str]], spans: np.ndarray, index: BM25Index, scheme: str) -> None:
        self.documents = documents
        self.spans = spans  # one (document index, start, end) row per chunk, in index order
        self.index = index
        self.scheme = scheme

    def __len__(self) -> int:
        return len(self.index)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The k chunks that best match the query, best first; chunks sharing no token with it are left out."""
        scores = self.index.scores(retrieval_tokens(query, self.scheme))
        hits = []
        for chunk in top_indices(scores, k):
            if scores[chunk] <= 0:
                break
            doc, start, end = self.spans[chunk].tolist()
            doc_id, text = self.documents[doc]
            hits.append(Hit(doc_id, text[start:end], float(scores[chunk])))
        return hits


def cache_key(
    documents: Sequence[tuple[str, str]], chunk_chars: int, overlap_chars: int, scheme: str = DEFAULT_SCHEME
) -> str:
    """sha256 (hex) over the format version, the chunking parameters, the scheme and every document."""
    digest = hashlib.sha256(f"{FORMAT} v{FORMAT_VERSION}\0{chunk_chars}\0{overlap_chars}\0{scheme}\0".encode())
    for doc_id, text in documents:
        for field in (str(doc_id), text):
            data = field.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))  # length-prefixed, so no two lists hash alike
            digest.update(data)
    return digest.hexdigest()


def build(
    documents: Sequence[tuple[str, str]],
    chunk_chars: int = 400,
    overlap_chars: int = 80,
    scheme: str = DEFAULT_SCHEME,
) -> CollectionIndex:
    """Chunk, tokenise and index the documents in memory."""
    rows: list[tuple[int, int, int]] = []
    corpus: list[list[str]] = []
    for doc, (_, text) in enumerate(documents):
        for start, end in chunk_spans(text, chunk_chars, overlap_chars):
            rows.append((doc, start, end))
            corpus.append(retrieval_tokens(text[start:end], scheme))
    spans = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return CollectionIndex(documents, spans, BM25Index(corpus), scheme)


def load_or_build(
    documents: Sequence[tuple[str, str]],
    chunk_chars: int = 400,
    overlap_chars: int = 80,
    scheme: str = DEFAULT_SCHEME,
    log: Callable[[str], None] = print,
) -> CollectionIndex:
    """The collection's index from the cache, else built and cached.

    The cache is written to a temporary sibling folder and renamed into place, so an interrupted build
    leaves no half cache; a cache that fails to load or to match the documents is deleted and rebuilt.
    """
    key = cache_key(documents, chunk_chars, overlap_chars, scheme)
    target = cache_root() / "bm25" / key
    if target.exists():
        try:
            return _load(target, documents, key, scheme)
        except (SmeltError, OSError) as exc:
            log(f"[smelt] rebuilding the damaged BM25 cache {target}: {exc}")
            shutil.rmtree(target, ignore_errors=True)
    collection = build(documents, chunk_chars, overlap_chars, scheme)
    work = target.parent / f"{key}.partial-{os.getpid()}"
    try:
        shutil.rmtree(work, ignore_errors=True)
        _save(collection, work, key, chunk_chars, overlap_chars)
        os.rename(work, target)
        log(f"[smelt] indexed {len(collection)} chunks of {len(documents)} documents into {target}")
    except OSError as exc:  # read-only cache, full disk, or another process renamed its copy in first
        if not target.exists():
            log(f"[smelt] could not cache the BM25 index at {target}: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return collection


def _save(collection: CollectionIndex, folder: Path, key: str, chunk_chars: int, overlap_chars: int) -> None:
    collection.index.save(folder)
    np.savez(folder / _SPANS, spans=collection.spans)
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "key": key,
        "chunk_chars": chunk_chars,
        "overlap_chars": overlap_chars,
        "scheme": collection.scheme,
        "documents": len(collection.documents),
        "chunks": len(collection),
    }
    (folder / _META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def _load(folder: Path, documents: Sequence[tuple[str, str]], key: str, scheme: str) -> CollectionIndex:
    """Read a cached index and check it against the documents; SmeltError if anything is off."""
    try:
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        if (meta.get("format"), meta.get("version"), meta.get("key")) != (FORMAT, FORMAT_VERSION, key):
            raise ValueError("metadata does not match this collection")
        index = BM25Index.load(folder)
        with np.load(folder / _SPANS, allow_pickle=False) as arrays:
            spans = arrays["spans"]
        lengths = np.array([len(text) for _, text in documents], dtype=np.int64)
        if spans.dtype != np.int64 or spans.shape != (len(index), 3) or meta.get("chunks") != len(index):
            raise ValueError("chunk offsets do not match the index")
        if len(spans):
            doc, start, end = spans.T
            if doc.min() < 0 or doc.max() >= len(documents) or start.min() < 0 or np.any(start >= end):
                raise ValueError("chunk offsets out of range")
            if np.any(end > lengths[doc]):
                raise ValueError("chunk offsets run past their document")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise SmeltError(f"invalid BM25 cache {folder}: {exc}") from exc
    return CollectionIndex(documents, spans, index, scheme)
