"""The evaluation loop: run a program over examples on many threads, score each, write one line per example.

Lines are appended as examples finish, so an interrupted evaluation keeps its work; run again with
the same output file and it continues where it stopped.
"""

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import dspy
from dspy.utils.exceptions import AdapterParseError
from tqdm import tqdm

from smelt.eval.judge import Metric


@dataclass
class EvalResult:
    records: list[dict]
    summary: dict = field(default_factory=dict)


def _usage_totals(tracker) -> tuple[int, int, int]:
    prompt = completion = calls = 0
    for entries in tracker.usage_data.values():
        for usage in entries:
            calls += 1
            prompt += int(usage.get("prompt_tokens") or 0)
            completion += int(usage.get("completion_tokens") or 0)
    return prompt, completion, calls


def evaluate_example(program: dspy.Module, example: dspy.Example, metric: Metric, lm) -> dict:
    """Run and score one example; a parse failure or an error is a recorded failure, never a crash.

    ``gold`` and ``prediction`` are the task's answer field; other output fields go under ``outputs``, and the
    task's extra scores (e.g. citation precision) under ``scores``."""
    task = metric.task
    record = {
        "id": example.get("id"),
        "inputs": {key: example[key] for key in example.inputs().keys()},
        "gold": example.get(task.answer_field),
        "prediction": None,
        "metric": metric.name,
        "score": 0.0,
        "parse_error": False,
        "error": None,
    }
    started = time.perf_counter()
    prediction = None
    with lm.context(), dspy.track_usage() as tracker:
        try:
            prediction = program(**example.inputs())
        except AdapterParseError as exc:
            record["parse_error"] = True
            record["error"] = f"unparseable output: {str(exc.lm_response)[:300]!r}"
        except Exception as exc:  # noqa: BLE001 - one failing example must not end the run
            record["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    record["latency_s"] = round(time.perf_counter() - started, 4)
    prompt, completion, calls = _usage_totals(tracker)
    record.update(prompt_tokens=prompt, completion_tokens=completion, lm_calls=calls)
    record["cached"] = prediction is not None and calls == 0
    if prediction is not None:
        record["prediction"] = prediction.get(task.answer_field)
        others = {name: prediction.get(name) for name in task.output_fields[1:]}
        if others:
            record["outputs"] = others
        if prediction.get("reasoning") is not None:
            record["reasoning"] = prediction.get("reasoning")
        value, detail = metric.score(example, prediction)
        record["score"] = round(float(value), 6)
        if detail:
            record["judge"] = detail
    if task.extra_scores:
        record["scores"] = task.extra_scores(example, prediction)
    return record


def _read_done(path: Path) -> dict[str, dict]:
    """Records already written; a torn last line (from an interruption) is dropped and the file rewritten."""
    if not path.exists():
        return {}
    done, good_lines = {}, []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[str(record["id"])] = record
        good_lines.append(line)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in good_lines), encoding="utf-8")
    os.replace(tmp, path)
    return done


def evaluate(
    program: dspy.Module,
    examples: list[dspy.Example],
    *,
    metric: Metric,
    lm,
    threads: int = 8,
    out_path: Path | None = None,
    desc: str = "eval",
    latency_sample: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> EvalResult:
    """Score ``program`` on ``examples``; with ``out_path``, append each record as it finishes and resume.

    ``latency_sample`` > 0 then times that many examples one request at a time (``smelt.eval.latency``).
    ``progress(examples_scored, running_mean_score)`` is called after each example; an exception it raises
    (a sweep pruning a hopeless trial) stops the evaluation: queued examples are dropped, not run."""
    done = _read_done(out_path) if out_path else {}
    todo = [ex for ex in examples if str(ex.get("id")) not in done]
    lock = threading.Lock()
    started = time.perf_counter()
    out = open(out_path, "a", encoding="utf-8") if out_path else None  # noqa: SIM115 - closed below
    bar = tqdm(total=len(examples), initial=len(examples) - len(todo), desc=desc, unit="ex", dynamic_ncols=True)
    scores = [r["score"] for r in done.values()]
    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    try:
        futures = [pool.submit(evaluate_example, program, ex, metric, lm) for ex in todo]
        for future in as_completed(futures):
            record = future.result()
            with lock:
                done[str(record["id"])] = record
                scores.append(record["score"])
                if out:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
            bar.update(1)
            bar.set_postfix({metric.name: f"{statistics.fmean(scores):.3f}"})
            if progress:
                progress(len(scores), statistics.fmean(scores))
    finally:
        # On an exception or Ctrl-C, examples not yet started are dropped; the ones in flight finish.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        if out:
            out.close()
    records = [done[str(ex.get("id"))] for ex in examples if str(ex.get("id")) in done]
    summary = summarize(records, metric.name, wall_s=time.perf_counter() - started) | {"threads": threads}
    if latency_sample > 0:
        from smelt.eval.latency import single_request_latency

        summary |= single_request_latency(program, examples, lm, latency_sample)
    return EvalResult(records, summary)


def summarize(records: list[dict], metric_name: str, *, wall_s: float | None = None) -> dict:
    """Headline numbers of an evaluation: score, failures, latency, tokens, calls."""
    n = len(records)
    fresh = [r for r in records if not r.get("cached")]
    mean = lambda values: round(statistics.fmean(values), 4) if values else None  # noqa: E731
    extra_names = dict.fromkeys(name for r in records for name in r.get("scores") or {})
    extra = {name: mean([r["scores"][name] for r in records if (r.get("scores") or {}).get(name) is not None])
             for name in extra_names}
    return {
        "metric": metric_name,
        "examples": n,
        "score": mean([r["score"] for r in records]),
        "parse_failures": sum(r["parse_error"] for r in records),
        "errors": sum(bool(r["error"]) and not r["parse_error"] for r in records),
        "cached_examples": n - len(fresh),
        "latency_s_per_example": mean([r["latency_s"] for r in fresh]),
        "prompt_tokens_per_example": mean([r["prompt_tokens"] for r in fresh]),
        "completion_tokens_per_example": mean([r["completion_tokens"] for r in fresh]),
        "lm_calls": sum(r["lm_calls"] for r in records),
        "wall_s": round(wall_s, 2) if wall_s is not None else None,
        **({"scores": extra} if extra else {}),
    }
