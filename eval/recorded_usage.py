"""Tokens and latency for answers DSPy served from its cache, taken from the run that computed them.

A cached answer costs nothing to serve, so its record carries no tokens or latency and a table column of
cached answers would show "-". When an earlier run already scored the same program on the same model and
examples (distill's teacher is a compile run, which scored the compiled program on test and the uncompiled
one as its baseline), that run's records hold what those answers cost: same id and same prediction means
the same answer, so its usage is copied over and the record names where it came from (``usage_from``).
"""

import json
from pathlib import Path

from smelt.files import write_text

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "latency_s", "lm_calls")


def fill_cached_usage(records: list[dict], recorded: Path, out_path: Path | None = None) -> int:
    """Copy usage into the cached ``records`` (in place) from the JSONL file ``recorded``; rewrite ``out_path``
    (the records' own file) to match. Returns how many records were filled."""
    if not recorded.is_file() or not any(r.get("cached") for r in records):
        return 0
    earlier = {}
    for line in recorded.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(record, dict) and not record.get("cached") and record.get("prompt_tokens"):
            earlier[str(record.get("id"))] = record
    filled = 0
    for record in records:
        source = earlier.get(str(record.get("id")))
        if record.get("cached") and source and source.get("prediction") == record.get("prediction"):
            record.update({key: source[key] for key in USAGE_KEYS if key in source}, usage_from=str(recorded))
            filled += 1
    if filled and out_path is not None:
        write_text(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return filled
