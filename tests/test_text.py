import pytest

from smelt.errors import SmeltError
from smelt.programs.text import DEFAULT_SCHEME, SCHEMES, is_japanese, metric_tokens, normalize, retrieval_tokens


def test_normalize_english():
    assert normalize("  The  Red, car's (an) A-Team! ") == "red cars ateam"


def test_normalize_japanese_punctuation_and_width():
    assert normalize("「東京・大阪」（１２３）！？、。") == "東京大阪123"
    assert normalize("ＡＢＣ　ｄｅｆ") == "abc def"


def test_is_japanese():
    assert is_japanese("これはペンです")
    assert is_japanese("東京都庁舎")  # kanji only
    assert is_japanese("Tokyo タワー")  # any kana
    assert not is_japanese("Tokyo is big")
    assert not is_japanese("Tokyo (東京) is the capital of Japan")  # a stray kanji gloss
    assert not is_japanese("")


def test_metric_tokens():
    assert metric_tokens("The red car.") == ["red", "car"]
    assert metric_tokens("東京 都。") == ["東", "京", "都"]
    assert metric_tokens("Tokyo", japanese=True) == list("tokyo")


MIXED = "東京タワーはTokyo Towerです。高さ３３３ｍ！"


def test_retrieval_chars_on_mixed_text():
    assert retrieval_tokens(MIXED, "chars") == [
        "東", "京", "タ", "ワ", "ー", "は", "tokyo", "tower", "で", "す", "高", "さ", "333m",
    ]  # fmt: skip


def test_retrieval_bigrams_on_mixed_text():
    assert retrieval_tokens(MIXED, "bigrams") == [
        "東京", "京タ", "タワ", "ワー", "ーは", "tokyo", "tower", "です", "高さ", "333m",
    ]  # fmt: skip


def test_retrieval_words_on_mixed_text():
    assert retrieval_tokens(MIXED, "words") == ["東京タワーは", "tokyo", "tower", "です", "高さ", "333m"]


def test_retrieval_bigrams_keep_single_characters_and_split_at_punctuation():
    assert retrieval_tokens("東・京、山", "bigrams") == ["東", "京", "山"]


def test_retrieval_english_is_the_same_for_every_scheme():
    for scheme in SCHEMES:
        assert retrieval_tokens("The Red car_park, 3.14", scheme) == ["the", "red", "car", "park", "3", "14"]


def test_default_scheme_is_known_and_unknown_raises():
    assert DEFAULT_SCHEME in SCHEMES
    assert retrieval_tokens("東京") == retrieval_tokens("東京", DEFAULT_SCHEME)
    with pytest.raises(SmeltError, match="unknown retrieval scheme"):
        retrieval_tokens("x", "trigrams")
