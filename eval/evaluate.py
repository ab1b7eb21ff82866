"""The evaluation loop: run a program over examples on many threads, score each, write one line per example.

Lines are appended as examples finish, so an interrupted evaluation keeps its work; run again with
the same output file and it continues where it stopped (examples whose model or judge call failed are
tried again). A failing call is a failed example, never a crash; but when the first examples all fail
(the server is down, the spec is wrong) the evaluation stops with one error instead of failing every example.
"""

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import dspy
from dspy.utils.exceptions import AdapterParseError
from tqdm import tqdm

from smelt.errors import ModelCallsFailed, describe_exception
from smelt.eval.fact_matching import invented_in_answer
from smelt.eval.judge import Metric
from smelt.eval.language import LANGUAGES, inputs_language
from smelt.eval.latency import single_request_latency
from smelt.eval.program_trace import recording_trace
from smelt.lm.truncation import install_truncation_filter, truncation_count
from smelt.log import to_stderr
from smelt.programs.text import is_blank
from smelt.redaction import redact_strings

EARLY_STOP_AFTER = 8  # when this many first examples all fail on their model (or judge) call, stop the evaluation


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


def _score(record: dict, metric: Metric, example: dspy.Example, prediction: dspy.Prediction) -> None:
    try:
        value, detail = metric.score(example, prediction)
    except Exception as exc:  # noqa: BLE001 - a failed judge call fails this example, not the run
        record["error"] = f"{metric.name}: {describe_exception(exc)}"
        record["judge_error"] = True
    else:
        record["score"] = round(float(value), 6)
        if detail and "invented" not in detail:  # +grounded's verdict on an invented fact is in "invented"
            record["judge"] = detail
            if detail.get("judge_error"):
                record["judge_error"] = True


# Long on purpose: one example's record, field by field, in the order of the JSONL line it becomes.
def evaluate_example(program: dspy.Module, example: dspy.Example, metric: Metric, lm) -> dict:
    """Run and score one example; a parse failure or an error is a recorded failure, never a crash.

    ``gold`` and ``prediction`` are the task's answer field; other output fields go under ``outputs``, and the
    task's extra scores (e.g. citation precision) under ``scores``. A metric call that raises (a judge behind a
    rate limit or a dead server) scores 0 with ``error`` "judge: ..." and ``judge_error``; a judge reply that does
    not parse scores 0 with ``judge_error`` too, but no ``error`` (asking again would get the same reply).
    ``truncated`` is set when one of the program's answers stopped at max_tokens.

    ``language`` is the inputs' language ("ja" or "en", smelt.eval.language); ``invented`` the facts of the answer
    its source does not hold, as written (smelt.eval.fact_matching; [] when none or no answer, None when the task gives
    no source to check against). ``malformed`` (a task declaring formats, smelt.programs.answer_format): the output
    fields whose answer lacks its format; such an answer scores 0, without a metric call."""
    task = metric.task
    inputs = {key: example[key] for key in example.inputs().keys()}
    record = {
        "id": example.get("id"),
        "inputs": inputs,
        "language": inputs_language(inputs.values()),
        "gold": example.get(task.answer_field),
        "prediction": None,
        "metric": metric.name,
        "score": 0.0,
        "parse_error": False,
        "error": None,
        "invented": [],
        **({"malformed": []} if task.formats else {}),  # the output fields without their declared format
    }
    started = time.perf_counter()
    prediction = None
    truncated_before = truncation_count()
    with lm.context(), dspy.track_usage() as tracker, recording_trace(program) as trace:
        try:
            prediction = program(**example.inputs())
        except AdapterParseError as exc:
            record["parse_error"] = True
            record["error"] = f"unparseable output: {str(exc.lm_response)[:300]!r}"
        except Exception as exc:  # noqa: BLE001 - one failing example must not end the run
            record["error"] = describe_exception(exc)
    record["latency_s"] = round(time.perf_counter() - started, 4)
    if truncation_count() > truncated_before:
        record["truncated"] = True
    prompt, completion, calls = _usage_totals(tracker)
    record.update(prompt_tokens=prompt, completion_tokens=completion, lm_calls=calls)
    record["cached"] = prediction is not None and calls == 0
    if trace:
        record["trace"] = trace
    if prediction is not None:
        record["prediction"] = prediction.get(task.answer_field)
        others = {name: prediction.get(name) for name in task.output_fields[1:]}
        if others:
            record["outputs"] = others
        if prediction.get("reasoning") is not None:
            record["reasoning"] = prediction.get("reasoning")
        try:
            record["invented"] = invented_in_answer(task, example, prediction)
        except Exception as exc:  # noqa: BLE001 - a task's source_text that fails must not end the run
            record["invented"] = None
            record["grounding_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        if task.formats:
            record["malformed"] = task.malformed(prediction)
        if is_blank(str(record["prediction"] or "")):  # spaces or U+200B only: no answer, 0 without a judge call
            record["blank_answer"] = True
        elif not record.get("malformed"):  # an answer without its declared format scores 0, unjudged
            _score(record, metric, example, prediction)
    if task.extra_scores:
        record["scores"] = task.extra_scores(example, prediction)
    return record


def call_failed(record: dict) -> bool:
    """The example's model or judge call raised (not an answer that did not parse): worth trying again."""
    return bool(record.get("error")) and not record.get("parse_error")


def _read_done(path: Path) -> dict[str, dict]:
    """Records already written, and the file rewritten to hold just those: a torn last line (from an
    interruption) is dropped, and so is a record whose model or judge call failed, to be tried again.
    A parse failure stays done: the same prompt would get the same answer."""
    if not path.exists():
        return {}
    done, good_lines = {}, []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if not isinstance(record, dict) or "id" not in record or call_failed(record):
            continue
        done[str(record["id"])] = record
        good_lines.append(line)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in good_lines), encoding="utf-8")
    os.replace(tmp, path)
    return done


# Long on purpose: the workers' closure and the loop that collects them share one lock and one state dict;
# split apart, that sharing would be harder to see.
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
    log: Callable[[str], None] | None = None,
) -> EvalResult:
    """Score ``program`` on ``examples``; with ``out_path``, append each record as it finishes and resume.

    ``latency_sample`` > 0 then times that many examples one request at a time (``smelt.eval.latency``).
    ``progress(examples_scored, running_mean_score)`` is called after each example; an exception it raises
    (a sweep pruning a hopeless trial) stops the evaluation: queued examples are dropped, not run.

    When the first ``min(len(todo), EARLY_STOP_AFTER)`` examples all fail on their model call (or all on their
    judge call), the rest are dropped and a SmeltError says so. On any exception (that one, Ctrl-C, a pruning
    exception) this returns at once: examples in flight finish in the background and are not written.
    ``log`` (default: stderr) gets one line when answers hit max_tokens."""
    done = _read_done(out_path) if out_path else {}
    todo = [ex for ex in examples if str(ex.get("id")) not in done]
    install_truncation_filter()  # so each record knows whether its answer was cut (idempotent)
    lock = threading.Lock()
    # Shared with the worker threads, under ``lock``: once ``closed``, no worker writes or counts anything.
    state = {"closed": False, "first": [], "failure": None}
    first_count = min(len(todo), EARLY_STOP_AFTER)
    started = time.perf_counter()
    out = open(out_path, "a", encoding="utf-8") if out_path else None  # noqa: SIM115 - closed below
    bar = tqdm(total=len(examples), initial=len(examples) - len(todo), desc=desc, unit="ex", dynamic_ncols=True)
    scores = [r["score"] for r in done.values()]

    def run(example: dspy.Example) -> dict:
        # Each worker writes its own record, whole, under the lock: Ctrl-C (raised in the main thread) cannot
        # cut a line, and a worker finishing after the evaluation stopped finds ``closed`` and writes nothing.
        # No credential reaches a record, or the errors built from it: an error naming the server's URL shows it
        # without its password, and a registered secret (an API key) is replaced wherever it appears.
        record = redact_strings(evaluate_example(program, example, metric, lm))
        with lock:
            if state["closed"]:
                return record
            done[str(record["id"])] = record
            if out:
                try:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
                except OSError as exc:  # a full disk: no later line may follow a cut one
                    state["closed"] = True
                    raise OSError(exc.errno, exc.strerror, str(out_path)) from None
            if len(state["first"]) < first_count:
                state["first"].append(record)
                if len(state["first"]) == first_count:
                    state["failure"] = _every_call_failed(state["first"], metric)
                    state["closed"] = state["failure"] is not None
        return record

    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    finished = False
    try:
        futures = [pool.submit(run, ex) for ex in todo]
        for future in completed_promptly(futures):
            record = future.result()
            if state["failure"] is not None:
                raise state["failure"]
            scores.append(record["score"])
            bar.update(1)
            bar.set_postfix({metric.name: f"{statistics.fmean(scores):.3f}"})
            if progress:
                progress(len(scores), statistics.fmean(scores))
        finished = True
    finally:
        with lock:
            state["closed"] = True
        # Finished: every example is done. On an exception or Ctrl-C, return now: examples not yet started are
        # dropped, the ones in flight finish in the background and write nothing (``closed``).
        pool.shutdown(wait=finished, cancel_futures=True)
        bar.close()
        if out:
            try:
                out.close()
            except OSError as exc:  # what was left to flush did not fit; an error already raised says more
                if finished:
                    raise OSError(exc.errno, exc.strerror, str(out_path)) from None
    records = [done[str(ex.get("id"))] for ex in examples if str(ex.get("id")) in done]
    summary = summarize(records, metric.name, wall_s=time.perf_counter() - started) | {"threads": threads}
    if summary["truncated"]:
        (log or to_stderr)(f"[smelt] {desc}: {summary['truncated']} of {len(records)} answers hit max_tokens")
    if latency_sample > 0:
        summary |= single_request_latency(program, examples, lm, latency_sample)
    return EvalResult(records, summary)


def completed_promptly(futures, poll_s: float = 0.5):
    """``as_completed``, waking every ``poll_s``: Linux may deliver Ctrl-C's signal to any thread (a worker, a
    torch thread), and the main thread runs Python's handler only when it wakes, which in a plain wait is when
    the next example finishes: a minute with a slow model."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=poll_s, return_when=FIRST_COMPLETED)
        yield from done


def _every_call_failed(records: list[dict], metric: Metric) -> ModelCallsFailed | None:
    """The error that stops an evaluation whose first examples all failed on a call: every model call, or every
    judge call (the rest failing on their model call); None when any of them succeeded or only failed to parse."""
    if any(not call_failed(r) for r in records):
        return None
    model_failures = [r for r in records if not r.get("judge_error")]
    judge_failures = [r for r in records if r.get("judge_error")]
    if len(model_failures) == len(records):
        n, first = len(records), model_failures[0]["error"]
        return ModelCallsFailed(f"every model call failed ({n} of {n} so far; the first: {first})" + _advice(first))
    if judge_failures:  # the examples whose model call did succeed all failed on the judge
        n, first = len(judge_failures), judge_failures[0]["error"].removeprefix(f"{metric.name}: ")
        judge = getattr(getattr(getattr(metric, "judge", None), "spec", None), "raw", None)
        named = f"the judge {judge}" if judge else "the judge"
        return ModelCallsFailed(f"every call to {named} failed ({n} of {n} so far; the first: {first}); "
                          "check --judge, --api-base and that the server is up")
    return None


def _advice(error: str) -> str:
    """What to check after a failed model call; a prompt past the context carries its own advice."""
    if "ContextWindowExceeded" in error or "context of" in error:
        return ""
    return "; check the model spec, --api-base, the API key and that the server is up"


def _mean(values) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 4) if values else None


def _extra_scores(records: list[dict]) -> dict:
    """The mean of each of the task's extra scores (e.g. citation precision) over the records that have it."""
    names = dict.fromkeys(name for r in records for name in r.get("scores") or {})
    return {name: _mean(r["scores"][name] for r in records if (r.get("scores") or {}).get(name) is not None)
            for name in names}


def invented_rate(records: list[dict]) -> float | None:
    """The share of answered examples whose answer holds at least one invented fact (among those checked)."""
    answered = [r for r in records if r.get("prediction") is not None and not is_blank(str(r["prediction"]))]
    return _mean(float(bool(r["invented"])) for r in answered if isinstance(r.get("invented"), list))


def by_language(records: list[dict]) -> dict:
    """{"ja": {"examples", "score", the extra scores' means..., "invented_rate"}, "en": {...}}: the languages present
    (records written before languages were recorded count in none)."""
    result = {}
    for code in LANGUAGES:
        group = [r for r in records if r.get("language") == code]
        if group:
            result[code] = {"examples": len(group), "score": _mean(r["score"] for r in group),
                            **_extra_scores(group), "invented_rate": invented_rate(group)}
    return result


def summarize(records: list[dict], metric_name: str, *, wall_s: float | None = None) -> dict:
    """Headline numbers of an evaluation: score (overall and by language), invented facts, failures, latency,
    tokens, calls."""
    n = len(records)
    # Tokens and latency come from answers the model computed: here, or in the earlier run a cached answer's
    # usage was taken from (``usage_from``, eval.recorded_usage).
    measured = [r for r in records if not r.get("cached") or r.get("usage_from")]
    extra = _extra_scores(records)
    languages = by_language(records)
    return {
        "metric": metric_name,
        "examples": n,
        "score": _mean([r["score"] for r in records]),
        **({"by_language": languages} if languages else {}),
        "invented_rate": invented_rate(records),
        "parse_failures": sum(r["parse_error"] for r in records),
        **({"malformed": sum(bool(r["malformed"]) for r in records if "malformed" in r)}
           if any("malformed" in r for r in records) else {}),
        "errors": sum(call_failed(r) and not r.get("judge_error") for r in records),
        "judge_errors": sum(bool(r.get("judge_error")) for r in records),
        "truncated": sum(bool(r.get("truncated")) for r in records),
        "cached_examples": sum(bool(r.get("cached")) for r in records),
        **({"usage_reused": reused} if (reused := sum(bool(r.get("usage_from")) for r in records)) else {}),
        "latency_s_per_example": _mean([r["latency_s"] for r in measured]),
        "prompt_tokens_per_example": _mean([r["prompt_tokens"] for r in measured]),
        "completion_tokens_per_example": _mean([r["completion_tokens"] for r in measured]),
        "lm_calls": sum(r["lm_calls"] for r in records if not r.get("usage_from")),
        "wall_s": round(wall_s, 2) if wall_s is not None else None,
        **({"scores": extra} if extra else {}),
    }
