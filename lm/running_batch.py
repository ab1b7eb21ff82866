"""Continuous batching: the requests decoding together, one token per step, joining and leaving at any step.

``generate`` keeps a batch together until its last row ends: a finished row is computed at every
step until then (with a 262k-token vocabulary the output projection alone is a large share of a CPU
step), and a request that arrives meanwhile waits for the whole batch. DSPy answers end at very
different lengths (a stop string after five tokens, or max_tokens), and DSPy's threads send their
next request as soon as one returns. Here a request joins the running batch at the next step, its
prompt pass done by ``row_prefill``, and leaves at the step it finishes; the batch's cache,
attention mask and positions grow and shrink with it (the same idea as continuous batching in vLLM,
TGI and transformers' ``generate_batch``).

Layout: every row's cache is right-aligned to the batch's width, as a left-padded prompt pass
would leave it; the attention mask hides the padding and position ids are per row, so each row
computes what it would alone. Sliding-window layers hold the last ``window - 1`` columns of that
width, as transformers' own ``DynamicSlidingWindowLayer`` does.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smelt.lm.appending_cache import append_in_place
from smelt.lm.greedy_head import GreedyHead
from smelt.lm.model_parts import cache_keyword, decoder_of, plain_output_projection


@dataclass(eq=False)
class Row:
    """One request in the running batch."""

    owner: Any  # whatever the caller tracks the request by (the engine's job)
    max_new_tokens: int
    finished: Callable[[list[int]], bool]  # has the row ended (an end token, a stop string)?
    temperature: float = 0.0
    top_p: float | None = None
    generator: Any = None  # a seeded torch.Generator of this row alone, so its samples do not depend on the batch
    generated: list[int] = field(default_factory=list)


class RunningBatch:
    def __init__(self, model, greedy_head: GreedyHead | None = None):
        self.model = model
        self.decoder, self.head = decoder_of(model), plain_output_projection(model)
        self.greedy_head = greedy_head if self.decoder is not None else None  # picks greedy tokens from hidden states
        self.cache_keyword = cache_keyword(self.decoder if self.decoder is not None else model)
        self.clear()

    def clear(self) -> None:
        self.rows: list[Row] = []
        self.cache = None
        self.mask = None  # (rows, width + 1): the cache's columns, then the token fed at the next step
        self.positions = None  # (rows, 1): the position of the token fed at the next step
        self.tokens = None  # (rows, 1): the token fed at the next step

    @property
    def width(self) -> int:
        """Columns of the batch's cache (the longest row's tokens, padding included)."""
        return 0 if self.mask is None else self.mask.shape[1] - 1

    def admit(self, row: Row, cache, last_token: int) -> None:
        """Add a row whose batch-1 ``cache`` holds its prompt but the last token, which it feeds at the next step."""
        import torch
        from torch.nn.functional import pad

        length = cache.get_seq_length()
        device = self.model.device
        mask = torch.ones((1, length + 1), dtype=torch.long, device=device)
        position = torch.tensor([[length]], device=device)
        token = torch.tensor([[last_token]], device=device)
        if not self.rows:
            append_in_place(cache)  # the batch's cache from now on
            self.cache, self.mask, self.positions, self.tokens = cache, mask, position, token
        else:
            width = max(self.width, length)
            _pad_left(self.cache, width)
            _pad_left(cache, width)
            for ours, theirs in zip(self.cache.layers, cache.layers, strict=True):
                ours.keys = torch.cat([ours.keys, theirs.keys])
                ours.values = torch.cat([ours.values, theirs.values])
            self.mask = torch.cat([pad(self.mask, (width - self.width, 0)), pad(mask, (width - length, 0))])
            self.positions = torch.cat([self.positions, position])
            self.tokens = torch.cat([self.tokens, token])
        self.rows.append(row)

    def step(self) -> list[Row]:
        """One new token for every row; the rows that finished are returned and have left the batch."""
        import torch

        inputs = {"input_ids": self.tokens, "attention_mask": self.mask, "position_ids": self.positions,
                  self.cache_keyword: self.cache, "use_cache": True}
        if self.greedy_head is not None and self.greedy_head.handles(len(self.rows)) and all(
            row.temperature <= 0 for row in self.rows
        ):
            chosen = self.greedy_head.argmax(self.decoder(**inputs).last_hidden_state[:, -1, :])
        else:
            chosen = self._pick(self._logits(inputs))
        finished, keep = [], []
        for index, (row, token) in enumerate(zip(self.rows, chosen.tolist(), strict=True)):
            row.generated.append(token)
            if len(row.generated) >= row.max_new_tokens or row.finished(row.generated):
                finished.append(row)
            else:
                keep.append(index)
        self.tokens = chosen[:, None]
        self.positions = self.positions + 1
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        if finished:
            self._keep(keep)
        return finished

    def _logits(self, inputs):
        """The next-token logits of every row (rows x vocabulary)."""
        if self.decoder is not None and self.head is not None:
            # weight @ hidden.T keeps the big matrix on the left, where CPU BLAS splits the work well (model_parts).
            return (self.head @ self.decoder(**inputs).last_hidden_state[:, -1, :].T).T
        return self.model(**inputs, logits_to_keep=1).logits[:, -1, :]

    def _pick(self, logits):
        """Greedy rows take the most likely token; sampling rows draw from their own generator."""
        import torch

        chosen = logits.argmax(dim=-1)
        for index, row in enumerate(self.rows):
            if row.temperature > 0:
                probs = torch.softmax(logits[index].float() / row.temperature, dim=-1)
                if row.top_p is not None and row.top_p < 1.0:
                    sorted_probs, order = probs.sort(descending=True)
                    sorted_probs[(sorted_probs.cumsum(0) - sorted_probs) > row.top_p] = 0.0  # the smallest top-p set
                    probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
                chosen[index] = torch.multinomial(probs, 1, generator=row.generator)[0]
        return chosen

    def _keep(self, indices: list[int]) -> None:
        """Keep only these rows, and drop the padding columns no row uses any more."""
        import torch

        if not indices:
            self.clear()
            return
        selected = torch.tensor(indices, device=self.mask.device)
        self.cache.batch_select_indices(selected)
        self.rows = [self.rows[i] for i in indices]
        self.mask, self.positions, self.tokens = self.mask[selected], self.positions[selected], self.tokens[selected]
        used = self.mask[:, :-1].any(dim=0)
        unused = int(used.int().argmax())  # leading columns that are padding in every row left
        if unused:
            self.mask = self.mask[:, unused:]
            for layer in self.cache.layers:
                if layer.is_sliding:
                    layer.cumulative_length = self.width
                    if layer.keys.shape[-2] > self.width:
                        layer.keys, layer.values = layer.keys[:, :, -self.width :], layer.values[:, :, -self.width :]
                else:
                    layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]


def _pad_left(cache, width: int) -> None:
    """Left-pad every layer of ``cache`` to ``width`` columns (a sliding-window layer to at most its window)."""
    from torch.nn.functional import pad

    for layer in cache.layers:
        target = min(width, layer.sliding_window - 1) if layer.is_sliding else width
        missing = target - layer.keys.shape[-2]
        if missing > 0:
            layer.keys = pad(layer.keys, (0, 0, missing, 0))
            layer.values = pad(layer.values, (0, 0, missing, 0))
        if layer.is_sliding:
            layer.cumulative_length = width
