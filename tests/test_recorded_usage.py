"""Cached answers get the tokens and latency the run that computed them recorded (distill's teacher columns)."""

import json

from smelt.eval.evaluate import summarize
from smelt.eval.recorded_usage import fill_cached_usage


def _record(id_, prediction, *, cached, tokens=0, latency=0.0):
    return {"id": id_, "prediction": prediction, "score": 1.0, "parse_error": False, "error": None,
            "cached": cached, "prompt_tokens": tokens, "completion_tokens": tokens // 10, "latency_s": latency,
            "lm_calls": 0 if cached else 1}


def test_cached_records_take_the_usage_of_the_same_answer(tmp_path):
    earlier = tmp_path / "compile" / "test.jsonl"
    earlier.parent.mkdir()
    earlier.write_text("".join(json.dumps(r) + "\n" for r in [
        _record("q1", "9:00", cached=False, tokens=700, latency=4.0),
        _record("q2", "Monday", cached=False, tokens=740, latency=5.0),
        _record("q3", "10:00", cached=False, tokens=760, latency=6.0)]))
    records = [_record("q1", "9:00", cached=True), _record("q2", "Tuesday", cached=True),  # another answer: not filled
               _record("q4", "x", cached=True)]
    assert summarize(records, "f1")["prompt_tokens_per_example"] is None  # all cached: nothing measured
    out = tmp_path / "distill" / "teacher.test.jsonl"
    out.parent.mkdir()
    assert fill_cached_usage(records, earlier, out) == 1
    assert records[0]["prompt_tokens"] == 700 and records[0]["usage_from"] == str(earlier)
    assert "usage_from" not in records[1] and records[1]["prompt_tokens"] == 0
    summary = summarize(records, "f1")
    assert summary["prompt_tokens_per_example"] == 700 and summary["latency_s_per_example"] == 4.0
    assert summary["cached_examples"] == 3 and summary["lm_calls"] == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["q1", "q2", "q4"]


def test_nothing_to_fill_without_a_recorded_file_or_cached_records(tmp_path):
    assert fill_cached_usage([_record("q1", "a", cached=True)], tmp_path / "missing.jsonl") == 0
    assert fill_cached_usage([_record("q1", "a", cached=False)], tmp_path / "missing.jsonl") == 0
