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
Either way an answer ends as ``generation`` says (end token, stop string, ``max_tokens``).

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

from smelt.lm.call_scope import CallCancelled, CallScope
from smelt.lm.engine.greedy_head import GreedyHead
from smelt.lm.engine.job import EngineJob
from smelt.lm.engine.model_parts import plain_output_projection
from smelt.lm.engine.packed_attention import register_packed_attention
from smelt.lm.engine.padded_generation import generate_padded
from smelt.lm.engine.prefix_cache import PrefixCache, prefix_cache_budget
from smelt.lm.engine.row_prefill import prefill_row, supports_row_prefill
from smelt.lm.engine.running_batch import Row, RunningBatch
from smelt.lm.generation import (
    Generation,
    GenerationSettings,
    decode_generation,
    finished_test,
    stream_pieces,
)
from smelt.lm.rendering import encode_prompt, messages_from_request


class PromptTooLong(ContextLengthError, ValueError):
    """A prompt plus its new tokens exceed the model's context. DSPy shows it as its ContextWindowExceededError
    (``[model] <this line>``), which it neither retries nor re-asks in another format."""

    def __init__(self, message: str):
        InvalidRequestError.__init__(self, message)  # ContextLengthError would append a multi-line how-to

    def __str__(self) -> str:
        return self.message


class TransformersEngine:
    """A DSPy engine running a transformers causal LM in this process, batching concurrent requests."""

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
        self.max_batch_size = max_batch_size
        self.gather_seconds = gather_seconds
        # Continuous batching and the prefix cache need a cache of plain full or sliding-window layers.
        self.continuous = supports_row_prefill(model) if continuous is None else continuous
        # Greedy steps pick their token through an int8 copy of the output projection (greedy_head; CPU, fp32).
        self.int8_screen = int8_screen
        # Greedy rows feed drafts of their next tokens, found in their own prompt and answer (prompt_lookup).
        self.prompt_lookup = prompt_lookup
        self._greedy_head: GreedyHead | None = None
        register_packed_attention()  # a decode step with drafts reads each key/value head once (packed_attention)
        self.prefix_cache = PrefixCache(prefix_cache_budget() if prefix_cache_bytes is None else prefix_cache_bytes)
        self.context_length = context_length(model, tokenizer)  # prompt + new tokens; None: not known
        # Requests taken from the queue at once (one entry per admission, or per generate call when not
        # continuous) since the last close(), for benchmarks and tests.
        self.batch_sizes: list[int] = []
        self.peak_rows = 0  # the most requests decoding together since the last close()
        self.steps = 0  # decode steps run (each feeds every running request its next token, and any draft)
        # Where the worker's time went, for the benchmarks: prompt passes run one request at a time, decode steps
        # serve the whole batch; the first bounds what concurrency can gain (docs/benchmarks.md, serve).
        self.prompt_pass_seconds = 0.0
        self.decode_step_seconds = 0.0
        self._pending: list[EngineJob] = []
        self._wakeup = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._callers_return = True  # whether answered callers are sending new requests (_await_returning_callers)

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
        job = EngineJob(encode_prompt(self.tokenizer, messages_from_request(request)),
                        GenerationSettings.from_config(request.config), progress=progress)
        self.check_fits(len(job.prompt_ids), job.settings.max_new_tokens)
        return job

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
        with self._wakeup:
            self._closed = True
            self.batch_sizes = []
            self.peak_rows = 0
            self._wakeup.notify_all()

    # --- batching ----------------------------------------------------------------------
    def _submit(self, *jobs: EngineJob) -> None:
        """Queue jobs, all at once: jobs sent together join the batch at the same step."""
        with self._wakeup:
            self._pending.extend(jobs)
            self._callers_return = True
            self._start_worker()
            self._wakeup.notify()

    def _start_worker(self) -> None:
        """Start the worker if none runs (called holding ``_wakeup``). The worker clears ``_worker`` under that
        lock when it stops, so a job is never left to one that is stopping."""
        if self._worker is None:
            self._closed = False
            self._worker = threading.Thread(target=self._serve, name=f"smelt-engine-{self.name}", daemon=True)
            self._worker.start()

    @staticmethod
    def _wait(job: EngineJob) -> Generation:
        while not job.done.wait(0.5):  # wake now and then: a Ctrl-C delivered to another thread is handled here
            pass
        if job.error is not None:
            raise job.error
        return job.result

    def _serve(self) -> None:
        running = RunningBatch(self.model, self._screened_head() if self.continuous else None)
        while True:
            with self._wakeup:
                while not self._pending and not running.rows and not self._closed:
                    self._wakeup.wait()
                if self._closed and not self._pending and not running.rows:
                    self._worker = None
                    return
            if not running.rows:
                time.sleep(self.gather_seconds)  # give threads that are about to submit a moment to arrive together
            if self.continuous:
                self._admit(running)
                started = time.perf_counter()
                finished = self._step(running)
                if finished and running.rows:
                    self._await_returning_callers(min(finished, self.max_batch_size - len(running.rows)),
                                                  time.perf_counter() - started)
            else:
                self._run_padded_batch()

    def _await_returning_callers(self, count: int, step_seconds: float) -> None:
        """After a step that answered ``count`` requests: wait for that many jobs to be queued before the next
        step, up to ``gather_seconds`` and a quarter of that step. A caller that sends its next request as soon as
        its answer comes (DSPy's threads, an HTTP client's loop) takes a few milliseconds to do so; without the
        wait its request misses the step that starts at once and joins a whole step later. The wait is skipped
        once a wait has gone by with no job arriving, until a job arrives again (the end of a workload, or callers
        that do not return), and a quarter step bounds what it costs the rows decoding meanwhile (a GPU's short
        steps)."""
        if not self._callers_return:
            return
        deadline = time.monotonic() + min(self.gather_seconds, step_seconds / 4)
        with self._wakeup:
            queued = len(self._pending)
            if queued >= count:
                return
            while len(self._pending) < count and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wakeup.wait(left)
            self._callers_return = len(self._pending) > queued

    def _screened_head(self) -> GreedyHead | None:
        """The int8-screened output projection, built on first use (a second or two) and kept; None where it
        does not apply (a GPU, bf16, a head that is not a plain matrix)."""
        if self._greedy_head is None and self.int8_screen:
            weight = plain_output_projection(self.model)
            if GreedyHead.usable(weight):
                self._greedy_head = GreedyHead(weight)
        return self._greedy_head if self.int8_screen else None

    def _take(self, limit: int, settings: GenerationSettings | None = None) -> list[EngineJob]:
        """Up to ``limit`` queued jobs, oldest first (only those with these settings, if given)."""
        with self._wakeup:
            jobs = [job for job in self._pending if settings is None or job.settings == settings][:limit]
            for job in jobs:
                self._pending.remove(job)
        if jobs:
            self.batch_sizes.append(len(jobs))
        return jobs

    def _admit(self, running: RunningBatch) -> None:
        """Run the prompt pass of the jobs waiting (as many as the batch has room for) and add them to it."""
        import torch

        running.drafts = self.prompt_lookup  # for the rows admitted from now on
        for job in self._take(self.max_batch_size - len(running.rows)):
            if job.cancelled:
                job.fail(CallCancelled("cancelled before its prompt pass"))
                continue
            try:
                if len(job.prompt_ids) < 2:  # nothing to prefill: a one-token prompt goes through generate
                    [result] = self._generate([job.prompt_ids], job.settings)
                    job.succeed(result)
                    continue
                started = time.perf_counter()
                with torch.inference_mode():
                    cache = prefill_row(self.model, job.prompt_ids, self.prefix_cache)
                    running.admit(self._row(job), cache, job.prompt_ids)
                self.prompt_pass_seconds += time.perf_counter() - started
            except BaseException as exc:  # this request fails alone
                job.fail(exc)
        self.prefix_cache.evict()
        self.peak_rows = max(self.peak_rows, len(running.rows))

    def _step(self, running: RunningBatch) -> int:
        """One token for every running job; finished jobs get their answer. How many did."""
        import torch

        started = time.perf_counter()
        try:
            with torch.inference_mode():  # the batch's cache holds inference tensors: changed only in this mode
                cancelled = [row for row in running.rows if row.owner.cancelled]
                if cancelled:
                    running.drop(cancelled)
                    for row in cancelled:
                        row.owner.fail(CallCancelled(f"cancelled after {len(row.generated)} tokens"))
                if not running.rows:
                    return 0
                finished = running.step()
            self.steps += 1
            self.decode_step_seconds += time.perf_counter() - started
        except BaseException as exc:  # hand the failure to every running job
            for row in running.rows:
                row.owner.fail(exc)
            running.clear()
            return 0
        for row in finished:
            job = row.owner
            job.succeed(decode_generation(self.model, self.tokenizer, row.generated, len(job.prompt_ids),
                                          job.settings))
        for row in running.rows:
            row.owner.report(row.generated)
        return len(finished)

    def _row(self, job: EngineJob) -> Row:
        import torch

        settings = job.settings
        generator = None
        if settings.temperature > 0 and settings.seed is not None:
            generator = torch.Generator(device=self.model.device).manual_seed(settings.seed)
        return Row(job, settings.max_new_tokens, finished_test(self.model, self.tokenizer, settings),
                   settings.temperature, settings.top_p, generator)

    def _run_padded_batch(self) -> None:
        """Without continuous batching: the oldest job and those queued with the same settings, as one batch."""
        with self._wakeup:
            if not self._pending:
                return
            settings = self._pending[0].settings
        batch = []
        for job in self._take(self.max_batch_size, settings):
            if job.cancelled:
                job.fail(CallCancelled("cancelled before its generate call"))
            else:
                batch.append(job)
        if not batch:
            return
        try:
            results = self._generate([job.prompt_ids for job in batch], settings, [job.scope for job in batch])
        except BaseException as exc:  # hand the failure to every waiting caller
            for job in batch:
                job.fail(exc)
            return
        for job, result in zip(batch, results, strict=True):
            if job.cancelled:
                job.fail(CallCancelled(f"cancelled after {result.completion_tokens} tokens"))
            else:
                job.succeed(result)

    # --- generation --------------------------------------------------------------------
    def generate_batch(self, prompts: list[list[int]], settings: GenerationSettings) -> list[Generation]:
        """Generate for several prompts queued together, as DSPy's threads would send them; blocks until done."""
        jobs = [EngineJob(list(ids), settings) for ids in prompts]
        self._submit(*jobs)
        return [self._wait(job) for job in jobs]

    def _generate(self, prompts: list[list[int]], settings: GenerationSettings,
                  scopes: list[CallScope | None] | None = None) -> list[Generation]:
        """One left-padded ``generate`` call for prompts with the same settings (a row whose scope is cancelled
        stops early)."""
        import torch

        with torch.inference_mode():
            generated = generate_padded(self.model, self.tokenizer, prompts, settings, scopes)
        return [decode_generation(self.model, self.tokenizer, tokens, len(ids), settings)
                for tokens, ids in zip(generated, prompts, strict=True)]


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
