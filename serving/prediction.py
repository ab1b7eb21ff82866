"""One ``/v1/predict`` answer: the program called on the task's inputs, on the run's model, in the calling (pool)
thread; its outputs, what it cost, and for a program that retrieves (rag_qa) the passages it answered from. A model
that fails is a ``RequestFailed`` with one line, never a traceback."""

import re

import dspy
from dspy.utils.exceptions import AdapterParseError, ContextWindowExceededError

from smelt.errors import SmeltError
from smelt.lifecycle.reloaded_run import LoadedRun
from smelt.lm.call_failure import model_call_failed
from smelt.programs.citations import cited_ids
from smelt.programs.task_inputs import check_inputs


class RequestFailed(Exception):
    """A request that gets no answer: its HTTP status and one line saying why (``field``: the input at fault)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def check_fields(loaded: LoadedRun, inputs: dict) -> None:
    """``run``'s check of the inputs (every input given, none blank or only invisible characters, nothing else) as
    a 422 naming the field."""
    try:  # as text, the way `run` reads them: a JSON 0 or false is a value, not an empty field
        check_inputs(loaded.task, {name: value if isinstance(value, str) else str(value)
                                   for name, value in inputs.items()})
    except SmeltError as exc:
        message = str(exc).replace("--input ", "")
        named = re.match(r"[^\s=:]+", message)  # check_inputs names the field first: "question=... is empty; ..."
        raise RequestFailed(422, message, named.group(0) if named else None) from None


def predict(loaded: LoadedRun, inputs: dict) -> dict:
    """The program's answer to ``inputs`` (already checked): {outputs, usage, passages, malformed}."""
    with loaded.lm.context(), dspy.track_usage() as tracker:
        try:
            prediction = loaded.program(**inputs)
        except AdapterParseError as exc:
            raise RequestFailed(502, f"the model's output could not be read: {str(exc.lm_response)[:200]!r}") from None
        except ContextWindowExceededError as exc:
            raise RequestFailed(422, f"the inputs are too long for the model: {str(exc)[:300]}") from None
        except Exception as exc:  # noqa: BLE001 - a model call that failed: one line, and the server stays up
            raise RequestFailed(502, model_call_failed(loaded.lm.spec.raw, exc)) from None
    outputs = {name: _clean(prediction.get(name)) for name in loaded.task.output_fields}
    return {"outputs": outputs, "usage": _usage(tracker), "passages": retrieved_passages(prediction),
            "malformed": loaded.task.malformed(prediction) if loaded.task.formats else None}


def _clean(value):
    return value.strip() if isinstance(value, str) else value


def _usage(tracker) -> dict:
    calls = [usage for entries in tracker.usage_data.values() for usage in entries]
    return {"prompt_tokens": sum(int(u.get("prompt_tokens") or 0) for u in calls),
            "completion_tokens": sum(int(u.get("completion_tokens") or 0) for u in calls), "lm_calls": len(calls)}


def retrieved_passages(prediction: dspy.Prediction) -> list[dict] | None:
    """The passages of a program that retrieves, as rag_qa reports them (``retrieved``: each passage's document
    id; ``passages``: the passages, each after its "[id] ", in that order), each marked cited or not. None for a
    program that does not retrieve."""
    text, ids = prediction.get("passages"), prediction.get("retrieved")
    if not isinstance(text, str) or not isinstance(ids, list) or not ids:
        return None
    starts, at = [], 0
    for doc_id in ids:
        found = text.find(f"[{doc_id}] ", at)
        if found < 0:  # not laid out as expected: leave the passages out rather than cut them wrongly
            return None
        starts.append(found)
        at = found + len(f"[{doc_id}] ")
    cited = cited_ids(prediction.get("citations"))
    ends = [*starts[1:], len(text)]
    return [{"id": str(doc_id), "text": text[start + len(f"[{doc_id}] "):end].strip(), "cited": str(doc_id) in cited}
            for doc_id, start, end in zip(ids, starts, ends, strict=True)]
