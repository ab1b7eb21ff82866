"""Text normalisation and tokenisation shared by the metrics and passage retrieval."""

import re
import string
import unicodedata

from smelt.errors import SmeltError

_ASCII_PUNCT = frozenset(string.punctuation)
_INVISIBLE_CATEGORIES = {"Cf", "Zs", "Zl", "Zp"}  # format characters (U+200B, U+FEFF...) and spaces
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_SPACES = re.compile(r"\s+")

# Kana (hiragana, katakana with the prolonged sound mark, phonetic extensions, half-width katakana);
# the middle dot ・ (U+30FB) sits in the katakana block but is punctuation.
_KANA = "\u3040-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f"
# CJK ideographs: unified, extension A, compatibility, and the supplementary-plane blocks; 々 and 〆 too.
_IDEOGRAPHS = "\u3005\u3006\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_KANA_RE = re.compile(f"[{_KANA}]")
_IDEOGRAPH_RE = re.compile(f"[{_IDEOGRAPHS}]")
# A CJK run, or a run of other word characters (Latin letters, digits, accented letters...).
_RUN_RE = re.compile(f"([{_KANA}{_IDEOGRAPHS}]+)|((?:(?![{_KANA}{_IDEOGRAPHS}])[^\\W_])+)")

# Share of CJK ideographs among letters above which kana-less text (e.g. 東京都庁舎) counts as Japanese.
_IDEOGRAPH_SHARE = 0.3

# Bigrams find the answer's chunk best over chunk sizes, and unlike single characters they hold up under plain
# Okapi idf (bench/bm25_tokenizers.py; docs/benchmarks.md).
DEFAULT_SCHEME = "bigrams"
SCHEMES = ("chars", "bigrams", "words")


def _strip_punctuation(text: str) -> str:
    return "".join(ch for ch in text if not (ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")))


def normalize(text: str) -> str:
    """NFKC, lowercase, drop punctuation and English articles, collapse whitespace (SQuAD convention)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _strip_punctuation(text)
    text = _ARTICLES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def is_japanese(text: str) -> bool:
    """True if the text has any kana, or CJK ideographs make up at least 30% of its letters."""
    if _KANA_RE.search(text):
        return True
    ideographs = len(_IDEOGRAPH_RE.findall(text))
    if not ideographs:
        return False
    letters = sum(1 for ch in text if ch.isalpha())
    return ideographs / letters >= _IDEOGRAPH_SHARE


def metric_tokens(text: str, japanese: bool | None = None) -> list[str]:
    """Tokens for F1/EM after `normalize`: characters for Japanese (as in JSQuAD), else whitespace words.

    `japanese` forces the language; by default it is detected from `text`.
    """
    if japanese is None:
        japanese = is_japanese(text)
    normalized = normalize(text)
    if japanese:
        return [ch for ch in normalized if not ch.isspace()]
    return normalized.split()


def retrieval_tokens(text: str, scheme: str = DEFAULT_SCHEME) -> list[str]:
    """Tokens for BM25: Latin/digit runs become lowercase words, CJK runs are split by `scheme`.

    Schemes for CJK runs: "chars" (one token per character), "bigrams" (overlapping character
    bigrams; a one-character run stays whole) and "words" (the run is one token, i.e. whitespace
    tokenisation with punctuation split off). Punctuation and whitespace never become tokens.
    """
    if scheme not in SCHEMES:
        raise SmeltError(f"unknown retrieval scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    text = unicodedata.normalize("NFKC", text).lower()
    tokens: list[str] = []
    for match in _RUN_RE.finditer(text):
        cjk, word = match.groups()
        if word is not None:
            tokens.append(word)
        elif scheme == "chars":
            tokens.extend(cjk)
        elif scheme == "bigrams" and len(cjk) > 1:
            tokens.extend(cjk[i : i + 2] for i in range(len(cjk) - 1))
        else:
            tokens.append(cjk)
    return tokens


def is_blank(text: str) -> bool:
    """True if ``text`` shows nothing: only whitespace and invisible format or space characters (U+200B...)."""
    return all(char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in text)


def label_key(text: str) -> str:
    """A label compared loosely: case, width, spaces, hyphens and underscores do not matter."""
    return normalize(re.sub(r"[_-]+", " ", text))
