"""Citations and retrieval, scored against the documents a reference answer comes from.

- citation precision: the share of cited documents that are reference documents (citing nothing is right
  only when the reference cites nothing, i.e. the question is unanswerable);
- citation recall: the share of reference documents cited (undefined for an unanswerable question);
- recall@k: the share of reference documents among the documents of the k retrieved passages (undefined for
  an unanswerable question).
Undefined scores are None and left out of the means.
"""

import re

_BRACKETED = re.compile(r"\[([^\[\]]{1,200})\]")
_ID_SPLIT = re.compile(r"[\s,、，;]+")
NO_CITATION = "none"


def split_citations(text: str, known_ids: set[str]) -> tuple[str, list[str]]:
    """'9:00 a.m. [r03, r17]' -> ('9:00 a.m.', ['r03', 'r17']): bracketed known document ids are taken out of the
    answer, in order of first mention; brackets holding anything else stay in it."""
    cited: list[str] = []

    def take(match: re.Match) -> str:
        ids = [part for part in _ID_SPLIT.split(match.group(1).strip()) if part]
        if ids and all(i in known_ids for i in ids):
            cited.extend(i for i in ids if i not in cited)
            return ""
        return match.group(0)

    answer = _BRACKETED.sub(take, text)
    return " ".join(answer.split()), cited


def cited_ids(citations: object) -> set[str]:
    """Document ids in a citations value: a list, or text like 'r03, r17' ('none' and '' are no ids)."""
    if citations is None:
        return set()
    if isinstance(citations, list | tuple | set):
        return {str(c).strip() for c in citations if str(c).strip()}
    parts = {part for part in _ID_SPLIT.split(str(citations).strip().strip("[]")) if part}
    return set() if {p.lower() for p in parts} <= {NO_CITATION, ""} else parts


def citation_precision(cited: set[str], reference: set[str]) -> float:
    if not cited:
        return float(not reference)
    return len(cited & reference) / len(cited)


def citation_recall(cited: set[str], reference: set[str]) -> float | None:
    if not reference:
        return None
    return len(cited & reference) / len(reference)


def recall_at_k(retrieved: list[str], reference: set[str]) -> float | None:
    if not reference:
        return None
    return len(set(retrieved) & reference) / len(reference)
