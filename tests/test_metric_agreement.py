"""The hand-rated answers of data/metric_agreement and the agreement statistics of bench/metric_agreement.py
(no model is loaded here)."""

import json
import math
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from bench.metric_agreement import CATEGORIES, average_ranks, pick, spearman, within
from smelt.programs.text import is_japanese

DATA = Path(__file__).resolve().parents[1] / "data" / "metric_agreement" / "rated.jsonl"
NOT_SAID = {"en": "The document does not say.", "ja": "文書に記載がありません。"}
REFUSAL = re.compile(r"does not say|doesn't say|not stated|doesn't mention|does not mention|記載がありません|"
                     r"書かれていません|記載なし")
CONTACT = re.compile(r"https?://[A-Za-z0-9./_~%-]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+|\d{2,4}-\d{2,4}-\d{3,4}")
FIELDS = {"id", "language", "category", "document", "question", "reference", "answer", "rating"}


def _rows() -> list[dict]:
    lines = [line for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


ROWS = _rows()


def _digits(text: str) -> set[str]:
    """Digit runs after NFKC, with thousands separators dropped (30,000 -> 30000)."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", unicodedata.normalize("NFKC", text))
    return set(re.findall(r"\d+", text))


def _contacts(text: str) -> set[str]:
    return {found.rstrip(".") for found in CONTACT.findall(unicodedata.normalize("NFKC", text))}


def test_size_languages_and_fields():
    assert len(ROWS) >= 80
    languages = Counter(row["language"] for row in ROWS)
    assert set(languages) == {"en", "ja"}
    assert abs(languages["en"] - languages["ja"]) <= 2
    for row in ROWS:
        assert set(row) == FIELDS, row["id"]
        assert all(isinstance(row[field], str) and row[field].strip() for field in FIELDS - {"rating"}), row["id"]


def test_ids_are_unique():
    ids = [row["id"] for row in ROWS]
    assert len(ids) == len(set(ids))


def test_ratings_are_integers_0_to_10():
    for row in ROWS:
        assert type(row["rating"]) is int and 0 <= row["rating"] <= 10, row["id"]


def test_every_category_in_both_languages_evenly():
    counts = Counter((row["category"], row["language"]) for row in ROWS)
    assert {category for category, _ in counts} == set(CATEGORIES)
    for category in CATEGORIES:
        for language in ("en", "ja"):
            assert counts[(category, language)] >= 4, (category, language)


def test_document_and_question_are_in_the_rows_language():
    for row in ROWS:
        japanese = row["language"] == "ja"
        assert is_japanese(row["document"]) == japanese, row["id"]
        assert is_japanese(row["question"]) == japanese, row["id"]
        assert is_japanese(row["reference"]) == japanese or not re.search(r"[A-Za-z]", row["reference"]), row["id"]


def test_references_numbers_come_from_the_document():
    """Every reference that answers the question takes its numbers from the document (correct and
    verbose_correct included: their answer is right by the document)."""
    for row in ROWS:
        if row["reference"] in NOT_SAID.values():
            continue
        missing = _digits(row["reference"]) - _digits(row["document"])
        assert not missing, f"{row['id']}: {missing} not in the document"


def test_correct_answers_state_the_reference_numbers():
    for row in ROWS:
        if row["category"] in ("correct", "verbose_correct"):
            assert _digits(row["reference"]) <= _digits(row["answer"]), row["id"]


def test_ratings_follow_the_rubric_ranges():
    ranges = {"correct": (10, 10), "verbose_correct": (8, 9), "partly_correct": (5, 7),
              "wrong_number_or_date": (1, 3), "wrong_language": (2, 2), "invented_url": (0, 3),
              "not_in_document_right": (9, 10), "not_in_document_wrong": (0, 1)}
    for row in ROWS:
        low, high = ranges[row["category"]]
        assert low <= row["rating"] <= high, row["id"]


def test_categories_are_what_they_say():
    for row in ROWS:
        category, language, answer = row["category"], row["language"], row["answer"]
        if category == "wrong_language":
            assert is_japanese(answer) != (language == "ja"), row["id"]
        else:
            assert is_japanese(answer) == (language == "ja"), row["id"]
        if category == "invented_url":
            assert _contacts(answer) - _contacts(row["document"]), f"{row['id']}: no invented contact"
        if category == "not_in_document_right":
            assert row["reference"] == NOT_SAID[language] and REFUSAL.search(answer), row["id"]
        if category == "not_in_document_wrong":
            # either the document does not say and the answer states a fact, or it does and the answer refuses
            assert (row["reference"] == NOT_SAID[language]) != bool(REFUSAL.search(answer)), row["id"]
        if category not in ("not_in_document_right", "not_in_document_wrong") and row["reference"] in NOT_SAID.values():
            pytest.fail(f"{row['id']}: an unanswerable question in category {category}")


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks([3, 1, 3, 3]) == [3.0, 1.0, 3.0, 3.0]
    assert average_ranks([]) == []


def test_spearman_on_known_inputs():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [1, 8, 27, 64, 125]) == pytest.approx(1.0)  # monotone, not linear
    # ties: ranks x = 1, 2.5, 2.5, 4 and y = 1, 2, 3, 4 -> Pearson of the ranks = 4.5 / sqrt(4.5 * 5)
    assert spearman([0.0, 0.5, 0.5, 1.0], [0, 5, 7, 10]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    # a three-way tie: ranks x = 1, 2.5, 2.5, 5, 5, 5 and y = 3, 1, 2, 5, 4, 6; centred, sum dx*dy = 12,
    # sum dx^2 = 15, sum dy^2 = 17.5
    assert spearman([1, 2, 2, 3, 3, 3], [3, 1, 2, 5, 4, 6]) == pytest.approx(12 / math.sqrt(15 * 17.5))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant metric has no ranking
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_within_two_points_after_scaling():
    assert within([1.0, 0.7, 0.0, 0.5], [10, 9, 3, 8]) == pytest.approx(0.5)  # 0 vs 3 and 5 vs 8 miss
    assert within([0.8], [10]) == 1.0  # exactly 2 points counts
    assert within([0.1 * 3], [1]) == 1.0  # 0.30000000000000004 * 10 is 3.0000000000000004
    assert within([0.3], [0], tolerance=3) == 1.0
    assert math.isnan(within([], []))


def test_limit_picks_every_group_in_turn():
    picked = pick(ROWS, 16)
    assert len(picked) == 16
    assert Counter(row["language"] for row in picked) == {"en": 8, "ja": 8}
    assert {row["category"] for row in picked} == set(CATEGORIES)
    first = pick(ROWS, 4)
    assert [(row["category"], row["language"]) for row in first] == [
        ("correct", "en"), ("correct", "ja"), ("verbose_correct", "en"), ("verbose_correct", "ja")]
    assert pick(ROWS, None) == ROWS and pick(ROWS, 10_000) == ROWS
