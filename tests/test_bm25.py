"""BM25Index against rank-bm25 (Lucene idf), its top-k order and files, and the cached collection index."""

import math

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from smelt.errors import SmeltError
from smelt.programs import collection_index
from smelt.programs.bm25 import BM25Index, top_indices
from smelt.programs.collection_index import load_or_build
from smelt.programs.text import retrieval_tokens


class ReferenceBM25(BM25Okapi):
    """rank-bm25's BM25Okapi with Lucene's always-positive idf: the scores BM25Index must reproduce."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        for word, freq in nd.items():
            self.idf[word] = math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5))


EN_CHUNKS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
    "It was designed by the company of Gustave Eiffel.",
    "Construction began in 1887 and finished in 1889, in time for the World's Fair.",
    "The tower is 330 metres tall; the tower was the tallest structure for 41 years.",
    "Visitors can climb stairs to the first and second levels.",
    "",
]
JA_CHUNKS = [
    "富士山は静岡県と山梨県にまたがる活火山である。",
    "標高は3776メートルで、日本最高峰の山として知られている。",
    "富士山は2013年に世界文化遺産に登録された。",
    "最後の噴火は1707年の宝永大噴火である。この噴火では江戸にも火山灰が降った。",
    "夏の登山シーズンは7月上旬から9月上旬までで、毎年約20万人が山頂を目指す。",
]
QUERIES = [
    "How tall is the tower?",
    "tower tower Eiffel Paris",  # repeated term
    "zeppelin quantum",  # unknown terms only
    "",  # empty
    "富士山の最後の噴火は何と呼ばれますか？",
    "噴火 噴火 江戸",  # repeated term
    "山",
    "Eiffel 富士山 1707",
]


@pytest.mark.parametrize("chunks", [EN_CHUNKS, JA_CHUNKS, EN_CHUNKS + JA_CHUNKS], ids=["en", "ja", "mixed"])
@pytest.mark.parametrize("scheme", ["bigrams", "chars", "words"])
def test_scores_equal_rank_bm25(chunks, scheme):
    corpus = [retrieval_tokens(chunk, scheme) for chunk in chunks]
    index, reference = BM25Index(corpus), ReferenceBM25(corpus)
    for question in QUERIES:
        query = retrieval_tokens(question, scheme)
        expected = reference.get_scores(query)
        np.testing.assert_allclose(index.scores(query), expected, rtol=1e-9, atol=0)
        ranking = sorted(range(len(chunks)), key=lambda i: (-expected[i], i))
        assert index.top_k(query, 3) == ranking[:3]
        assert index.top_k(query, len(chunks)) == ranking


def test_repeated_query_terms_count_each_time():
    index = BM25Index([["a", "b"], ["b", "c"], ["c"]])
    once, twice = index.scores(["a"]), index.scores(["a", "a"])
    assert once[0] > 0 and twice[0] == pytest.approx(2 * once[0])
    assert index.scores(["zzz"]).tolist() == [0.0, 0.0, 0.0]
    assert index.scores([]).tolist() == [0.0, 0.0, 0.0]


def test_top_k_breaks_ties_by_index():
    scores = np.array([1.0, 3.0, 2.0, 3.0, 0.0, 2.0, 3.0])
    expected = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    for k in range(len(scores) + 2):
        assert top_indices(scores, k) == expected[:k]
    assert top_indices(np.zeros(5), 2) == [0, 1]
    assert top_indices(np.zeros(0), 3) == []
    index = BM25Index([["x"], ["y", "z"], ["y", "z"], ["y", "w"]])  # chunks 1 and 2 tie
    assert index.top_k(["z", "y"], 4) == [1, 2, 3, 0]


def test_empty_corpora_score_nothing():
    assert BM25Index([]).top_k(["a"], 3) == []
    assert BM25Index([[], []]).scores(["a"]).tolist() == [0.0, 0.0]
    assert BM25Index([[], []]).top_k(["a"], 2) == [0, 1]


def test_save_and_load_round_trip(tmp_path):
    corpus = [retrieval_tokens(chunk) for chunk in EN_CHUNKS + JA_CHUNKS]
    index = BM25Index(corpus)
    index.save(tmp_path / "index")
    loaded = BM25Index.load(tmp_path / "index")
    assert len(loaded) == len(index) and loaded.vocabulary_size == index.vocabulary_size
    for question in QUERIES:
        query = retrieval_tokens(question)
        assert np.array_equal(loaded.scores(query), index.scores(query))


def test_load_rejects_damaged_files(tmp_path):
    BM25Index([["a", "b"], ["b", "c"]] * 50).save(tmp_path)
    arrays = tmp_path / "postings.npz"
    data = bytearray(arrays.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside an array: caught by the zip member's CRC
    arrays.write_bytes(bytes(data))
    with pytest.raises(SmeltError):
        BM25Index.load(tmp_path)
    arrays.write_bytes(b"")
    with pytest.raises(SmeltError):
        BM25Index.load(tmp_path)
    arrays.unlink()
    with pytest.raises(FileNotFoundError):
        BM25Index.load(tmp_path)


DOCUMENTS = [
    (
        "fuji",
        "富士山は静岡県と山梨県にまたがる活火山である。標高は3776メートルで、日本最高峰の山として知られている。\n"
        "最後の噴火は1707年の宝永大噴火である。この噴火では江戸にも火山灰が降った。",
    ),
    (
        "eiffel",
        "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the company of "
        "Gustave Eiffel. It was overtaken by the Chrysler Building in New York.",
    ),
    ("library", "市立図書館の開館時間は平日が午前9時から午後7時までです。毎月最終月曜日は休館日です。"),
    ("waste", "Burnable waste is collected every Tuesday and Friday. Bags must be put out by 8:30 a.m."),
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SMELT_CACHE", str(tmp_path))
    return tmp_path / "bm25"


def test_collection_search_finds_the_document(cache):
    collection = load_or_build(DOCUMENTS, chunk_chars=60, overlap_chars=0, log=lambda message: None)
    assert len(collection) > len(DOCUMENTS)  # documents were chunked
    hit = collection.search("富士山の最後の噴火は何と呼ばれますか？", k=3)[0]
    assert hit.doc_id == "fuji" and "宝永大噴火" in hit.text and hit.score > 0
    hit = collection.search("Which building in New York overtook the tower?", k=3)[0]
    assert hit.doc_id == "eiffel" and "Chrysler" in hit.text
    hits = collection.search("waste Tuesday", k=10)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert collection.search("zeppelin", k=3) == []


def test_cache_is_reused_and_damage_is_rebuilt(cache, monkeypatch):
    messages: list[str] = []
    first = load_or_build(DOCUMENTS, chunk_chars=60, overlap_chars=0, log=messages.append)
    (folder,) = cache.iterdir()  # one finished folder, no partial left behind
    assert len(folder.name) == 64
    mtimes = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt a valid cache")

    with monkeypatch.context() as patch:
        patch.setattr(collection_index, "build", no_build)
        second = load_or_build(DOCUMENTS, chunk_chars=60, overlap_chars=0, log=messages.append)
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == mtimes
    query = "富士山の噴火"
    assert second.search(query) == first.search(query)

    # Other chunking parameters or documents: another key.
    load_or_build(DOCUMENTS, chunk_chars=80, overlap_chars=0, log=messages.append)
    load_or_build(DOCUMENTS[:3], chunk_chars=60, overlap_chars=0, log=messages.append)
    assert len(list(cache.iterdir())) == 3

    (folder / "postings.npz").write_bytes(b"not a zip file")
    messages.clear()
    third = load_or_build(DOCUMENTS, chunk_chars=60, overlap_chars=0, log=messages.append)
    assert any("damaged" in message for message in messages)
    assert third.search(query) == first.search(query)
    load_or_build(DOCUMENTS, chunk_chars=60, overlap_chars=0, log=no_build)  # the rebuilt cache is valid


def test_a_cache_from_other_documents_is_not_trusted(cache):
    load_or_build(DOCUMENTS, chunk_chars=60, overlap_chars=0, log=lambda message: None)
    (folder,) = cache.iterdir()
    # Filed under the key of shorter documents (whose chunk offsets it would overrun): rejected, rebuilt.
    shorter = [(doc_id, text[:20]) for doc_id, text in DOCUMENTS]
    folder.rename(cache / collection_index.cache_key(shorter, 60, 0))
    messages: list[str] = []
    collection = load_or_build(shorter, chunk_chars=60, overlap_chars=0, log=messages.append)
    assert any("damaged" in message for message in messages)
    texts = dict(shorter)
    hits = collection.search("富士山 Eiffel", k=5)
    assert hits and all(hit.text in texts[hit.doc_id] for hit in hits)
