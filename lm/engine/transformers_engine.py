"""The in-process transformers engine behind ``dspy.LM(model, engine=...)``.

DSPy calls ``complete`` from many threads at once (Evaluate, optimizers). Each call becomes a job
on a queue served by one worker thread, which runs continuous batching (``running_batch``): every
step decodes one token for all running requests, a request that arrived meanwhile joins at the next
step, and a finished one returns at once (the step after waits a moment for that caller's next request,
which DSPy's threads and HTTP clients send within milliseconds). A request's prompt pass (``row_prefill``)
starts from the longest prefix whose key/value states the engine already holds (``prefix_cache``): a compiled
program's system message and demos are computed once, not once per request. On a CPU in fp32, a
greedy step reads an int8 copy of the output projection and computes exactly only the few logits
that could win (``greedy_head``): the same tokens at a fraction of the memory traffic. A step of several rows with
drafts reads each key/value head once rather than a copy per query head (``packed_attention``).

Models whose cache is not made of plain full or sliding-window layers run instead in batches of
requests with equal settings, through one left-padded ``generate`` call per batch (``padded_generation``).
Either way an answer ends as ``generation`` says (end token, stop string, ``max_tokens``), and a request whose
``response_format`` carries an answer pattern (``completion_pattern``) is held to it token by token
(``constrained_rows``); the other requests of its batch decode as before.

The worker's loop (``_serve``) has two parts: the ``scheduler`` decides which queued requests run at the next step
(admission, continuous or padded batching, the waits for callers to arrive), and the ``model_runner`` runs them on
the weights (prompt passes, decode steps, ``generate`` calls). This module is the DSPy API and the worker thread.

``stream`` hands out an answer's text as the steps settle it (serve's streamed chat completions).

A request whose prompt and ``max_tokens`` do not fit the model's context is refused on its own
(``PromptTooLong``) before it is queued; the other requests run as usual. A call made inside a cancelled
``call_scope.CallScope`` (serve's request past its timeout, or a streamed reply whose client went away) leaves the
queue, the running batch or the padded ``generate`` call at the next admission or step.
"""

import queue
import threading
import time

from dspy.clients.engines.base import validate_request
from dspy.lm15 import (
    ContextLengthError,
    InvalidRequestError,
    Message,
    Response,
    StreamDeltaEvent,
    StreamEndEvent,
    StreamStartEvent,
    TextDelta,
    TextPart,
    Usage,
)

from smelt.lm.engine.job import EngineJob
from smelt.lm.engine.model_runner import ModelRunner
from smelt.lm.engine.row_prefill import supports_row_prefill
from smelt.lm.engine.scheduler import Scheduler
from smelt.lm.generation import Generation, GenerationSettings, decode_generation, stream_pieces
from smelt.lm.rendering import encode_prompt, messages_from_request


class PromptTooLong(ContextLengthError, ValueError):
    """A prompt plus its new tokens exceed the model's context. DSPy shows it as its ContextWindowExceededError
    (``[model] <this line>``), which it neither retries nor re-asks in another format."""

    def __init__(self, message: str):
        InvalidRequestError.__init__(self, message)  # ContextLengthError would append a multi-line how-to

    def __str__(self) -> str:
        return self.message


def _kept_by(part: str, name: str) -> property:
    """An attribute of the engine that one of its parts keeps (``engine.steps`` is ``engine.runner.steps``)."""
    return property(lambda self: getattr(getattr(self, part), name),
                    lambda self, value: setattr(getattr(self, part), name, value))


class TransformersEngine:
    """A DSPy engine running a transformers causal LM in this process, batching concurrent requests."""

    takes_completion_pattern = True  # a request's answer pattern is applied token by token (constrained_rows)

    def __init__(
        self,
        model,
        tokenizer,
        *,
        name: str,
        max_batch_size: int = 16,
        gather_seconds: float = 0.02,
        continuous: bool | None = None,
        prefix_cache_bytes: int | None = None,
        int8_screen: bool = True,
        prompt_lookup: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        # Continuous batching and the prefix cache need a cache of plain full or sliding-window layers.
        self.scheduler = Scheduler(max_batch_size=max_batch_size, gather_seconds=gather_seconds,
                                   continuous=supports_row_prefill(model) if continuous is None else continuous)
        self.runner = ModelRunner(model, tokenizer, prefix_cache_bytes=prefix_cache_bytes, int8_screen=int8_screen,
                                  prompt_lookup=prompt_lookup, name=name)
        self.context_length = context_length(model, tokenizer)  # prompt + new tokens; None: not known
        self._worker: threading.Thread | None = None

    # Settings and records, kept by the part that uses them: the scheduler decides which requests run together, the
    # model runner runs them (docs/engine.md).
    max_batch_size = _kept_by("scheduler", "max_batch_size")
    gather_seconds = _kept_by("scheduler", "gather_seconds")
    continuous = _kept_by("scheduler", "continuous")
    batch_sizes = _kept_by("scheduler", "batch_sizes")
    int8_screen = _kept_by("runner", "int8_screen")
    prompt_lookup = _kept_by("runner", "prompt_lookup")
    prefix_cache = _kept_by("runner", "prefix_cache")
    peak_rows = _kept_by("runner", "peak_rows")
    steps = _kept_by("runner", "steps")
    prompt_pass_seconds = _kept_by("runner", "prompt_pass_seconds")
    decode_step_seconds = _kept_by("runner", "decode_step_seconds")

    # --- the DSPy engine API -------------------------------------------------------------
    def complete(self, request) -> Response:
        job = self._job_for(request)
        self._submit(job)
        result = self._wait(job)
        return Response(
            id=None,
            model=self.name,
            message=Message.assistant([TextPart(result.text)]),
            finish_reason=result.finish_reason,
            usage=_usage(result),
        )

    def stream(self, request):
        """The answer as DSPy's stream events, its text sent as the steps settle it (``stream_pieces``): what is sent
        is never taken back, and all of it together is ``complete``'s text. The request is checked and queued before
        the first event, so a prompt too long raises there."""
        job = self._job_for(request, progress=queue.SimpleQueue())
        self._submit(job)
        return self._events(job)

    def _events(self, job: EngineJob):
        yield StreamStartEvent(model=self.name)
        partial_texts = (decode_generation(self.model, self.tokenizer, tokens, 0, job.settings).text
                         for tokens in iter(job.progress.get, None))
        for piece in stream_pieces(partial_texts, job.settings.stop, lambda: self._wait(job).text):
            yield StreamDeltaEvent(delta=TextDelta(text=piece))
        result = self._wait(job)
        yield StreamEndEvent(finish_reason=result.finish_reason, usage=_usage(result))

    def _job_for(self, request, progress: queue.SimpleQueue | None = None) -> EngineJob:
        validate_request(request)
        settings = GenerationSettings.from_config(request.config)
        job = EngineJob(encode_prompt(self.tokenizer, messages_from_request(request)), settings,
                        constraint=self._compiled(settings), progress=progress)
        self.check_fits(len(job.prompt_ids), job.settings.max_new_tokens)
        return job

    def _compiled(self, settings: GenerationSettings):
        """The settings' answer pattern compiled (in the caller's thread: the worker's steps go on meanwhile)."""
        return self.runner.patterns.compiled(settings.pattern) if settings.pattern else None

    def check_fits(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Refuse a prompt that, with its new tokens, does not fit the model's context."""
        limit = self.context_length
        if limit is not None and prompt_tokens + max_new_tokens > limit:
            raise PromptTooLong(
                f"prompt of {prompt_tokens:,} tokens + {max_new_tokens:,} new tokens exceeds {self.name}'s context "
                f"of {limit:,} tokens; shorten the inputs, or use a model with a longer context"
            )

    def close(self) -> None:
        """Stop the worker once the queued requests are answered, and start ``batch_sizes`` afresh.

        The engine stays usable: it is shared by every ``lm_for_spec`` on its model, and the next request
        starts a new worker, so one user closing it does not break another."""
        self.runner.peak_rows = 0
        self.scheduler.close()

    def generate_batch(self, prompts: list[list[int]], settings: GenerationSettings) -> list[Generation]:
        """Generate for several prompts queued together, as DSPy's threads would send them; blocks until done."""
        jobs = [EngineJob(list(ids), settings, constraint=self._compiled(settings)) for ids in prompts]
        self._submit(*jobs)
        return [self._wait(job) for job in jobs]

    # --- the worker ----------------------------------------------------------------------
    def _submit(self, *jobs: EngineJob) -> None:
        """Queue jobs, all at once: jobs sent together join the batch at the same step."""
        self.scheduler.submit(jobs, self._start_worker)

    def _start_worker(self) -> bool:
        """Start the worker if none runs; whether one was started. Called holding the scheduler's lock, under which
        the worker clears ``_worker`` when it stops (``_worker_stops``), so a job is never left to one that is
        stopping."""
        if self._worker is not None:
            return False
        self._worker = threading.Thread(target=self._serve, name=f"smelt-engine-{self.name}", daemon=True)
        self._worker.start()
        return True

    def _worker_stops(self) -> None:
        self._worker = None

    @staticmethod
    def _wait(job: EngineJob) -> Generation:
        while not job.done.wait(0.5):  # wake now and then: a Ctrl-C delivered to another thread is handled here
            pass
        if job.error is not None:
            raise job.error
        return job.result

    def _serve(self) -> None:
        """The worker's loop: the scheduler picks the jobs of the next step, the model runner runs them."""
        scheduler, runner = self.scheduler, self.runner
        running = runner.running_batch(scheduler.continuous)
        while scheduler.wait_for_work(len(running.rows), self._worker_stops):
            if scheduler.continuous:
                runner.prefill(scheduler.admit(len(running.rows)), running)
                started = time.perf_counter()
                finished = runner.step(running)
                scheduler.after_step(finished, len(running.rows), time.perf_counter() - started)
            else:
                batch = scheduler.next_batch()
                if batch is not None:
                    runner.generate_padded(*batch)


def _usage(result: Generation) -> Usage:
    return Usage(input_tokens=result.prompt_tokens, output_tokens=result.completion_tokens)


def context_length(model, tokenizer) -> int | None:
    """Tokens the model attends to: its config's max_position_embeddings, or the tokenizer's model_max_length
    when that is smaller (tokenizers without a limit report a huge placeholder, ignored here)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    limit = getattr(config, "max_position_embeddings", None)
    limit = limit if isinstance(limit, int) and limit > 0 else None
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 10**8 and (limit is None or tokenizer_limit < limit):
        limit = tokenizer_limit
    return limit
