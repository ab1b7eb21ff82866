"""Per-language scores: detecting an example's language (smelt.eval.language), by_language in a summary, and
the tables' "score, Japanese" / "score, English" rows."""

import contextlib
from pathlib import Path
from types import SimpleNamespace

import dspy
import pytest

from smelt.eval.evaluate import evaluate, summarize
from smelt.eval.judge import resolve_metric
from smelt.eval.language import detect_language, inputs_language
from smelt.eval.reports.tables import markdown_table, text_table
from smelt.programs.registry import get_task

LM = SimpleNamespace(context=contextlib.nullcontext)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(("text", "language"), [
    ("申請の締切はいつですか？", "ja"),
    ("東京都庁舎", "ja"),  # kanji only
    ("ｶﾀｶﾅ", "ja"),  # half-width katakana
    ("When is the application due?", "en"),
    ("Where is the Kitanodai (北野台) branch library?", "en"),  # a Japanese name in English: under 10%
    ("CD・DVDは1人何点まで借りられますか。", "ja"),  # Latin letters in Japanese
    ("", "en"),
    ("12:00 / 03-1234-5678", "en"),  # no letters at all
    (None, "en"),
])
def test_detect_language(text, language):
    assert detect_language(text) == language


def test_detection_agrees_with_every_shipped_example():
    for name in ("doc_qa", "rag_qa", str(EXAMPLES / "inquiry_routing.toml"), str(EXAMPLES / "due_dates.toml")):
        task = get_task(name)
        splits = task.shipped_data()
        for example in splits.train + splits.dev + splits.test:
            values = [example.get(field) for field in task.input_fields]
            assert inputs_language(values) == example.language, (name, example.id)


def _record(score, language, **extra):
    return {"score": score, "parse_error": False, "error": None, "latency_s": 0.1, "prompt_tokens": 1,
            "completion_tokens": 1, "lm_calls": 1, "language": language, "prediction": "x", "invented": [],
            **extra}


def test_summary_scores_each_language():
    records = [_record(1.0, "ja", scores={"citation_recall": 1.0}), _record(0.5, "ja", invented=["3万円"]),
               _record(0.0, "en", scores={"citation_recall": 0.0})]
    summary = summarize(records, "f1")
    assert summary["score"] == 0.5
    assert summary["by_language"] == {
        "ja": {"examples": 2, "score": 0.75, "citation_recall": 1.0, "invented_rate": 0.5},
        "en": {"examples": 1, "score": 0.0, "citation_recall": 0.0, "invented_rate": 0.0},
    }
    assert list(summarize(records[:2], "f1")["by_language"]) == ["ja"]  # only the languages present
    old = [{k: v for k, v in r.items() if k not in ("language", "invented")} for r in records]  # earlier records
    assert "by_language" not in summarize(old, "f1") and summarize(old, "f1")["invented_rate"] is None


def test_evaluate_records_the_language_of_the_inputs():
    task = get_task("doc_qa")
    splits = task.shipped_data()
    examples = [ex for ex in splits.test if ex.language == "ja"][:3] + [ex for ex in splits.test
                                                                        if ex.language == "en"][:2]
    gold = {ex.question: ex.answer for ex in examples}

    def program(document, question):  # right on Japanese, wrong on English
        return dspy.Prediction(answer=gold[question] if "。" in question or "？" in question else "no idea")

    result = evaluate(program, examples, metric=resolve_metric("f1", task), lm=LM, threads=1)
    assert [r["language"] for r in result.records] == ["ja", "ja", "ja", "en", "en"]
    by_language = result.summary["by_language"]
    assert by_language["ja"]["examples"] == 3 and by_language["ja"]["score"] == 1.0
    assert by_language["en"] == {"examples": 2, "score": 0.0, "invented_rate": 0.0}


def test_tables_show_each_language_right_under_the_score():
    base = {"metric": "f1", "examples": 5, "score": 0.6, "scores": {"citation_recall": 0.5}, "parse_failures": 0}
    columns = {
        "baseline": base | {"by_language": {"ja": {"examples": 3, "score": 1.0}, "en": {"examples": 2, "score": 0.0}}},
        "compiled": base | {"by_language": {"ja": {"examples": 3, "score": 0.667}}},
        "old run": base,  # a summary written before languages were recorded
    }
    lines = text_table(columns).splitlines()
    labels = [line.split("  ")[0].strip() for line in lines]
    assert labels[2:6] == ["score (f1)", "score, Japanese", "score, English", "citation recall"]
    assert lines[3].split()[2:] == ["1.000", "(n=3)", "0.667", "(n=3)", "-"]
    assert lines[4].split()[2:] == ["0.000", "(n=2)", "-", "-"]
    markdown = markdown_table(columns).splitlines()
    assert markdown[2].startswith("| score (f1) |")
    assert markdown[3] == "| score, Japanese | 1.000 (n=3) | 0.667 (n=3) | - |"
    assert markdown[4] == "| score, English | 0.000 (n=2) | - | - |"
    only_ja = {"compiled": columns["compiled"]}
    assert "English" not in text_table(only_ja) and "Japanese" not in text_table({"old run": base})
