"""The model step: what the engine's worker runs on the weights once the scheduler (``scheduler``) has chosen the
requests. It decides nothing about which requests run together; it runs them.

- Continuous batching: ``prefill`` runs the prompt pass of each admitted request (``row_prefill``, from the longest
  prefix the ``prefix_cache`` holds) and adds it to the running batch; ``step`` decodes one token for every running
  request, and any draft (``running_batch``), and answers those that finished. A greedy step on a CPU in fp32 picks
  its tokens through an int8 copy of the output projection (``greedy_head``, ``screened_head``).
- Padded batching: ``generate_padded`` runs one left-padded ``generate`` call over a batch of equal settings
  (``padded_generation``).

A request with an answer pattern is held to it (``constrained_rows``): its row in the running batch, or its row of
the ``generate`` call, picks only tokens the pattern allows.

Each request's answer goes back through its job (``job``): a request that fails fails alone, except a failed decode
step, which fails every running request. A request whose ``CallScope`` is cancelled leaves at its prompt pass, at
the next step, or once its ``generate`` call returns.
"""

import time

from smelt.lm.call_scope import CallCancelled, CallScope
from smelt.lm.engine.constrained_rows import AnswerPatterns, CompiledPattern, RowMatcher
from smelt.lm.engine.greedy_head import GreedyHead
from smelt.lm.engine.job import EngineJob
from smelt.lm.engine.model_parts import logits_size, plain_output_projection
from smelt.lm.engine.packed_attention import register_packed_attention
from smelt.lm.engine.padded_generation import generate_padded
from smelt.lm.engine.prefix_cache import PrefixCache, prefix_cache_budget
from smelt.lm.engine.row_prefill import prefill_row
from smelt.lm.engine.running_batch import Row, RunningBatch
from smelt.lm.generation import Generation, GenerationSettings, decode_generation, finished_test


class ModelRunner:
    """Prompt passes, decode steps and padded ``generate`` calls on one model, with the state they keep between
    batches (the prefix cache, the int8 greedy screen) and the counts the benchmarks read."""

    def __init__(self, model, tokenizer, *, prefix_cache_bytes: int | None = None, int8_screen: bool = True,
                 prompt_lookup: bool = True, name: str = "model"):
        self.model = model
        self.tokenizer = tokenizer
        self.patterns = AnswerPatterns(tokenizer, logits_size(model), name)  # requests' answer patterns, compiled
        # Greedy steps pick their token through an int8 copy of the output projection (greedy_head; CPU, fp32).
        self.int8_screen = int8_screen
        # Greedy rows feed drafts of their next tokens, found in their own prompt and answer (prompt_lookup).
        self.prompt_lookup = prompt_lookup
        self._greedy_head: GreedyHead | None = None
        register_packed_attention()  # a decode step with drafts reads each key/value head once (packed_attention)
        self.prefix_cache = PrefixCache(prefix_cache_budget() if prefix_cache_bytes is None else prefix_cache_bytes)
        self.peak_rows = 0  # the most requests decoding together since the engine's last close()
        self.steps = 0  # decode steps run (each feeds every running request its next token, and any draft)
        # Where the worker's time went, for the benchmarks: prompt passes run one request at a time, decode steps
        # serve the whole batch; the first bounds what concurrency can gain (docs/benchmarks.md, serve).
        self.prompt_pass_seconds = 0.0
        self.decode_step_seconds = 0.0

    def running_batch(self, continuous: bool) -> RunningBatch:
        """An empty running batch, its greedy steps screened where that applies (continuous batching only)."""
        return RunningBatch(self.model, self.screened_head() if continuous else None)

    def screened_head(self) -> GreedyHead | None:
        """The int8-screened output projection, built on first use (a second or two) and kept; None where it
        does not apply (a GPU, bf16, a head that is not a plain matrix)."""
        if self._greedy_head is None and self.int8_screen:
            weight = plain_output_projection(self.model)
            if GreedyHead.usable(weight):
                self._greedy_head = GreedyHead(weight)
        return self._greedy_head if self.int8_screen else None

    # --- continuous batching -----------------------------------------------------------
    def prefill(self, jobs: list[EngineJob], running: RunningBatch) -> None:
        """Run the prompt pass of the admitted jobs and add them to the running batch."""
        import torch

        running.drafts = self.prompt_lookup  # for the rows admitted from now on
        for job in jobs:
            if job.cancelled:
                job.fail(CallCancelled("cancelled before its prompt pass"))
                continue
            try:
                if len(job.prompt_ids) < 2:  # nothing to prefill: a one-token prompt goes through generate
                    [result] = self.generate([job.prompt_ids], job.settings, constraint=job.constraint)
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

    def step(self, running: RunningBatch) -> int:
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
                   settings.temperature, settings.top_p, generator,
                   constraint=RowMatcher(job.constraint) if job.constraint is not None else None)

    # --- padded batching ---------------------------------------------------------------
    def generate_padded(self, settings: GenerationSettings, jobs: list[EngineJob]) -> None:
        """Answer jobs with these settings through one ``generate`` call (those cancelled meanwhile fail)."""
        batch = []
        for job in jobs:
            if job.cancelled:
                job.fail(CallCancelled("cancelled before its generate call"))
            else:
                batch.append(job)
        if not batch:
            return
        try:
            # Jobs with equal settings have the same pattern, compiled once (AnswerPatterns keeps it).
            results = self.generate([job.prompt_ids for job in batch], settings, [job.scope for job in batch],
                                    constraint=batch[0].constraint)
        except BaseException as exc:  # hand the failure to every waiting caller
            for job in batch:
                job.fail(exc)
            return
        for job, result in zip(batch, results, strict=True):
            if job.cancelled:
                job.fail(CallCancelled(f"cancelled after {result.completion_tokens} tokens"))
            else:
                job.succeed(result)

    def generate(self, prompts: list[list[int]], settings: GenerationSettings,
                 scopes: list[CallScope | None] | None = None, constraint: CompiledPattern | None = None,
                 ) -> list[Generation]:
        """One left-padded ``generate`` call for prompts with the same settings (a row whose scope is cancelled
        stops early), each row held to ``constraint`` where one is given."""
        import torch

        with torch.inference_mode():
            generated = generate_padded(self.model, self.tokenizer, prompts, settings, scopes, constraint)
        return [decode_generation(self.model, self.tokenizer, tokens, len(ids), settings)
                for tokens, ids in zip(generated, prompts, strict=True)]
