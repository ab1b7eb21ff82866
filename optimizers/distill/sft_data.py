"""Supervised fine-tuning data: chat rows on disk, token ids in memory, padded batches for training.

A row is what the teacher saw and said: ``{"messages": [...], "completion": "..."}``, where the
messages end with the adapter's assistant prefill. The student is trained on exactly the prompt
ids the inference engine sends (``encode_prompt``), followed by the completion and EOS; the loss
covers the completion only.
"""

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smelt.errors import SmeltError
from smelt.lm.rendering import encode_prompt
from smelt.programs.data_files import load_records
from smelt.redaction import redact_strings

IGNORE_INDEX = -100  # labels with this value carry no loss (torch cross_entropy's default ignore_index)
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class SftExample:
    prompt_ids: list[int]
    completion_ids: list[int]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


def tokenize_sft(tokenizer, messages: list[dict], completion: str) -> SftExample:
    """Prompt ids exactly as the engine encodes them; completion ids plus EOS."""
    if tokenizer.eos_token_id is None:
        raise SmeltError("the student's tokenizer has no EOS token, so a trained answer could never end")
    prompt_ids = list(encode_prompt(tokenizer, messages))
    completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return SftExample(prompt_ids, completion_ids)


def write_sft_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSONL (UTF-8, one object a line, extra keys such as "id" kept); renamed into place at the end."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with partial.open("w", encoding="utf-8") as f:
            for number, row in enumerate(rows, 1):
                problem = _row_problem(row)
                if problem:
                    raise SmeltError(f"{path}: row {number}: {problem}")
                # Extra keys (id, source) travel along for the audit trail.
                line = {**row, "messages": [dict(m) for m in row["messages"]], "completion": row["completion"]}
                f.write(json.dumps(redact_strings(line), ensure_ascii=False) + "\n")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_sft_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read chat rows; a malformed line fails with FILE:LINE and what is wrong."""
    rows = []
    for number, row in load_records(path):
        problem = _row_problem(row)
        if problem:
            raise SmeltError(f"{path}:{number}: {problem}")
        rows.append(row)
    return rows


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return 'expected an object {"messages": [...], "completion": "..."}'
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return '"messages" must be a non-empty list of {"role", "content"} objects'
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f'messages[{i}] needs a "role" of {", ".join(ROLES)}'
        if not isinstance(message.get("content"), str):
            return f'messages[{i}] needs a string "content"'
    if not isinstance(row.get("completion"), str):
        return '"completion" must be a string'
    return None


def fit_to_length(example: SftExample, max_length: int, keep_first: int | None = None) -> SftExample | None:
    """Cut the prompt from the left so the example fits max_length; None when the completion alone does not fit.

    The completion is never cut. When the prompt starts with ``keep_first`` (the BOS token), that
    token stays in front of the kept tail: models such as Gemma go astray without it.
    """
    room = max_length - len(example.completion_ids)
    if room < 1:
        return None
    prompt = example.prompt_ids
    if len(prompt) <= room:
        return example
    if keep_first is not None and prompt[0] == keep_first and room >= 2:
        return SftExample([prompt[0], *prompt[len(prompt) - room + 1 :]], example.completion_ids)
    return SftExample(prompt[len(prompt) - room :], example.completion_ids)


def fit_examples(
    examples: list[SftExample], max_length: int, keep_first: int | None = None
) -> tuple[list[SftExample], int]:
    """All examples cut to max_length, and how many were dropped because their completion alone is too long."""
    fitted = [fit_to_length(example, max_length, keep_first) for example in examples]
    kept = [example for example in fitted if example is not None]
    return kept, len(fitted) - len(kept)


def collate_sft(
    batch: list[SftExample], *, pad_id: int, max_length: int, keep_first: int | None = None
) -> dict[str, Any]:
    """Right-padded input_ids, attention_mask and labels (IGNORE_INDEX on prompt and padding)."""
    import torch

    fitted = [fit_to_length(example, max_length, keep_first) for example in batch]
    if any(example is None for example in fitted):
        raise ValueError(f"a completion is longer than max_length={max_length}; drop it first with fit_examples")
    width = max(len(example) for example in fitted)
    input_ids = torch.full((len(fitted), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(fitted), width), dtype=torch.long)
    labels = torch.full((len(fitted), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(fitted):
        n_prompt, n = len(example.prompt_ids), len(example)
        input_ids[row, :n] = torch.tensor(example.prompt_ids + example.completion_ids)
        attention_mask[row, :n] = 1
        labels[row, n_prompt:n] = input_ids[row, n_prompt:n]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
