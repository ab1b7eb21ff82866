import re

import pytest

from smelt.errors import SmeltError
from smelt.programs.retrieval import PASSAGE_SEPARATOR, rank_chunks, select_passages, split_into_chunks
from smelt.programs.text import SCHEMES

JA_DOC = (
    "富士山は静岡県と山梨県にまたがる活火山である。標高は3776メートルで、日本最高峰の山として知られている。\n"
    "富士山は2013年に世界文化遺産に登録された。登録名は「富士山－信仰の対象と芸術の源泉」である。\n"
    "山頂には浅間大社の奥宮があり、古くから信仰の対象となってきた。江戸時代には富士講と呼ばれる集団登山が盛んになった。\n"
    "最後の噴火は1707年の宝永大噴火である。この噴火では江戸にも火山灰が降った。現在も気象庁が常時観測を続けている。\n"
    "夏の登山シーズンは7月上旬から9月上旬までで、毎年約20万人が山頂を目指す。吉田ルートが最も人気が高い。"
)
EN_DOC = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. "
    "It was designed by the company of Gustave Eiffel.\n"
    "Construction began in 1887 and finished in 1889, in time for the World's Fair. "
    "Critics called it an eyesore.\n"
    "The tower is 330 metres tall and was the tallest man-made structure for 41 years. "
    "It was overtaken by the Chrysler Building in New York.\n"
    "Visitors can climb stairs to the first and second levels. Lifts carry them to the summit."
)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[。.!?])\s*|\n", text) if s.strip()]


@pytest.mark.parametrize("doc", [JA_DOC, EN_DOC])
@pytest.mark.parametrize(("chunk_chars", "overlap_chars"), [(400, 80), (120, 40), (60, 0)])
def test_chunks_keep_every_sentence_and_respect_size(doc, chunk_chars, overlap_chars):
    chunks = split_into_chunks(doc, chunk_chars, overlap_chars)
    assert len(chunks) > 1 or len(doc) <= chunk_chars
    assert all(0 < len(chunk) <= chunk_chars for chunk in chunks)
    for sentence in _sentences(doc):
        if len(sentence) <= chunk_chars:  # longer ones must be cut
            assert any(sentence in chunk for chunk in chunks), sentence
    assert all(chunk in doc for chunk in chunks)  # chunks are verbatim slices


@pytest.mark.parametrize("doc", [JA_DOC, EN_DOC])
def test_chunks_overlap_by_whole_sentences(doc):
    chunks = split_into_chunks(doc, 150, 70)
    shared = []
    for first, second in zip(chunks, chunks[1:], strict=False):
        overlap = next((second[:n] for n in range(len(second), 0, -1) if first.endswith(second[:n])), "")
        assert len(overlap) <= 70
        if overlap:
            sentences = _sentences(first)
            assert _sentences(overlap) == sentences[len(sentences) - len(_sentences(overlap)) :]
            shared.append(overlap)
    assert shared


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_a_long_sentence_is_cut_to_size():
    doc = "word " * 100 + "end. Short one."
    chunks = split_into_chunks(doc, 50, 10)
    assert all(len(chunk) <= 50 for chunk in chunks)
    assert all(chunk.startswith("word") for chunk in chunks[:-1])  # cut at spaces, not inside words
    assert chunks[-1].endswith("end. Short one.")


@pytest.mark.parametrize("doc", [JA_DOC, EN_DOC, "x" * 130 + "。短い。"])
def test_no_text_is_lost_without_overlap(doc):
    chunks = split_into_chunks(doc, 50, 0)
    assert _squeeze("".join(chunks)) == _squeeze(doc)


def test_empty_document_and_bad_sizes():
    assert split_into_chunks("") == []
    assert split_into_chunks(" \n ") == []
    with pytest.raises(SmeltError):
        split_into_chunks(JA_DOC, 0)
    with pytest.raises(SmeltError):
        split_into_chunks(JA_DOC, 100, 100)


def test_select_passages_returns_short_documents_unchanged():
    assert select_passages(EN_DOC, "When did construction begin?", len(EN_DOC), 1) == EN_DOC
    assert select_passages(JA_DOC, "質問", 10_000, 2) == JA_DOC


def test_select_passages_finds_the_japanese_answer():
    passage = select_passages(JA_DOC, "富士山の最後の噴火は何と呼ばれますか？", 150, 1, chunk_chars=120)
    assert "宝永大噴火" in passage
    assert len(passage) <= 120


def test_select_passages_finds_the_english_answer():
    question = "Which building in New York overtook the Eiffel Tower?"
    passage = select_passages(EN_DOC, question, 200, 1, chunk_chars=150)
    assert "Chrysler Building" in passage
    assert len(passage) <= 150


def test_select_passages_keeps_document_order_and_marks_gaps():
    question = "Who designed the lattice tower? Which lifts carry visitors to the summit?"
    passage = select_passages(EN_DOC, question, 100, 2, chunk_chars=110)
    first, second = passage.split(PASSAGE_SEPARATOR)
    assert "Gustave Eiffel" in first
    assert "summit" in second
    assert EN_DOC.index(first) < EN_DOC.index(second)


def test_select_passages_is_never_empty():
    assert select_passages(EN_DOC, "", 50, 1, chunk_chars=100)
    assert select_passages(EN_DOC, "zzz qqq", 50, 1, chunk_chars=100)
    with pytest.raises(SmeltError):
        select_passages(EN_DOC, "q", 50, 0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rank_chunks_breaks_ties_by_position(scheme):
    assert rank_chunks(["alpha", "beta", "gamma"], "unrelated", scheme) == [0, 1, 2]
    assert rank_chunks(["alpha", "beta", "gamma"], "gamma", scheme)[0] == 2


def test_rank_chunks_works_with_two_chunks():
    # Plain Okapi idf is zero for a term in one of two chunks; ranking must still find it.
    assert rank_chunks(["東京の話です。", "大阪の話です。"], "大阪はどこ？") == [1, 0]
