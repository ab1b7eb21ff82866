"""The language of an example, for per-language scores: "ja" (Japanese) or "en" (English, and anything else).

The rule: take the text of all the example's inputs together (doc_qa: the document and the question; rag_qa:
the question; a task file: its input fields) and count its letters (characters Python calls alphabetic, CJK
included). The example is Japanese when kana and CJK ideographs are more than 10% of those letters, else
English; an input without letters is English. The inputs, not the reference or the answer, decide: they are
what the model read, and an unanswerable question's reference carries no language of its own.

On the shipped data the rule agrees with the recorded language of every example: Japanese inputs of doc_qa
and rag_qa are at least 95% kana/kanji, English ones 0% (inquiry_routing: 100% and 0%), so the 10% mark
leaves room for an English document quoting a Japanese name or a Japanese one full of English terms.
"""

from collections.abc import Iterable

from smelt.programs.text import _IDEOGRAPH_RE, _KANA_RE

LANGUAGES = {"ja": "Japanese", "en": "English"}  # code -> the name the tables show, in table order
JAPANESE_SHARE = 0.1  # above this share of kana/kanji among the letters, the text is Japanese


def detect_language(text: str | None) -> str:
    """'ja' when kana and CJK ideographs make up more than JAPANESE_SHARE of the text's letters, else 'en'."""
    text = text or ""
    letters = sum(1 for ch in text if ch.isalpha())
    if not letters:
        return "en"
    japanese = len(_KANA_RE.findall(text)) + len(_IDEOGRAPH_RE.findall(text))
    return "ja" if japanese / letters > JAPANESE_SHARE else "en"


def inputs_language(values: Iterable) -> str:
    """The language of an example from the values of its input fields (None values are skipped)."""
    return detect_language("\n".join(str(value) for value in values if value is not None))
