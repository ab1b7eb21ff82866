"""Continuous batching: the requests decoding together, joining and leaving at any step.

``generate`` keeps a batch together until its last row ends: a finished row is computed at every
step until then (with a 262k-token vocabulary the output projection alone is a large share of a CPU
step), and a request that arrives meanwhile waits for the whole batch. DSPy answers end at very
different lengths (a stop string after five tokens, or max_tokens), and DSPy's threads send their
next request as soon as one returns. Here a request joins the running batch at the next step, its
prompt pass done by ``row_prefill``, and leaves at the step it finishes; the batch's cache grows and
shrinks with it (the same idea as continuous batching in vLLM, TGI and transformers' ``generate_batch``).

A greedy row also feeds a draft of its next tokens (``prompt_lookup``) and keeps those the model
itself picks, so one step may add several tokens to it. Rows keep different numbers of a step's
columns; the others stay in the cache as holes.

A row with an answer pattern (``constrained_rows``) picks, at each position, among the tokens its pattern allows
there: the greedy screen (``greedy_head``) or the full logits with the others masked out, so its pick is exact and the
rows without a pattern keep their speed. Its draft is cut to the tokens the pattern accepts, and each drafted position
is masked as it would be one token at a time.

Layout: every row's cache is right-aligned to the batch's width, as a left-padded prompt pass would
leave it. ``positions`` records the position of the token in each column (-1: padding or a hole), and
each step passes attention masks built from it: a token sees the columns at its position or before
(and, in sliding-window layers, within the window), so each row computes what it would alone.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smelt.lm.engine.appending_cache import append_in_place, drop_last, join_rows, keep_rows
from smelt.lm.engine.greedy_head import GreedyHead
from smelt.lm.engine.model_parts import cache_keyword, decoder_of, logits_size, plain_output_projection
from smelt.lm.engine.prompt_lookup import PromptLookup

DRAFT_TOKENS_MAX = 7  # drafted tokens a row feeds in one step, at most
STEP_TOKENS_MAX = 16  # tokens a step feeds over all rows, drafts included: beyond it drafts cost more than they save


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
    lookup: PromptLookup | None = None  # its tokens so far, for drafts (greedy rows)
    constraint: Any = None  # its answer pattern's matcher (constrained_rows.RowMatcher); None: unconstrained
    next_token: int = 0  # the token it feeds at the next step
    next_position: int = 0  # that token's position


class RunningBatch:
    def __init__(self, model, greedy_head: GreedyHead | None = None, *, drafts: bool = True):
        import torch
        from transformers import DynamicCache

        self.model = model
        self.decoder, self.head = decoder_of(model), plain_output_projection(model)
        self.vocabulary_size = logits_size(model)
        self.greedy_head = greedy_head if self.decoder is not None else None  # picks greedy tokens from hidden states
        self.cache_keyword = cache_keyword(self.decoder if self.decoder is not None else model)
        self.drafts = drafts
        # Masks as the attention implementation takes them: booleans for SDPA, additive floats otherwise.
        self.boolean_masks = getattr(model.config, "_attn_implementation", "sdpa") == "sdpa"
        self.mask_dtype = next(model.parameters()).dtype if not self.boolean_masks else torch.bool
        # Which masks the model takes, a property of the model alone: one per layer type where its layers mix full and
        # sliding-window attention, else one mask for every layer.
        layers = DynamicCache(config=model.config).layers
        windows = {layer.sliding_window for layer in layers if layer.is_sliding}
        self.sliding_window = windows.pop() if windows else None
        layer_types = getattr(model.config.get_text_config(), "layer_types", None)
        self.mask_per_layer_type = bool(layer_types) and len(set(layer_types)) > 1
        self.all_sliding = bool(layers) and all(layer.is_sliding for layer in layers)
        self.clear()

    def clear(self) -> None:
        self.rows: list[Row] = []
        self.cache = None
        self.positions = None  # (rows, width): the position of each column's token, -1 where a row has none

    @property
    def width(self) -> int:
        """Columns of the batch's cache (the longest row's tokens, padding and holes included)."""
        return 0 if self.positions is None else self.positions.shape[1]

    def admit(self, row: Row, cache, prompt: list[int]) -> None:
        """Add a row whose batch-1 ``cache`` holds ``prompt`` but its last token, which it feeds at the next step."""
        import torch
        from torch.nn.functional import pad

        length = len(prompt) - 1
        positions = torch.arange(length, device=self.model.device)[None]
        row.next_token, row.next_position = prompt[-1], length
        if self.drafts and row.temperature <= 0:
            row.lookup = PromptLookup(prompt)
        if not self.rows:
            append_in_place(cache)  # the batch's cache from now on
            self.cache, self.positions = cache, positions
        else:
            width = max(self.width, length)
            join_rows(self.cache, cache, width)
            self.positions = torch.cat([pad(self.positions, (width - self.width, 0), value=-1),
                                        pad(positions, (width - length, 0), value=-1)])
        self.rows.append(row)

    def step(self) -> list[Row]:
        """One step: each row gains a token, or more where its draft held; the rows that finished leave, returned."""
        import torch

        feeds = self._feeds()
        fed = max(len(tokens) for tokens in feeds)
        device = self.positions.device
        ids = torch.tensor([tokens + [tokens[-1]] * (fed - len(tokens)) for tokens in feeds], device=device)
        first = torch.tensor([row.next_position for row in self.rows], device=device)
        query_positions = first[:, None] + torch.arange(fed, device=device)
        valid = torch.arange(fed, device=device)[None] < torch.tensor([len(t) for t in feeds], device=device)[:, None]
        self.positions = torch.cat([self.positions, torch.where(valid, query_positions, -1)], dim=1)
        picks = self._picks(ids, query_positions, valid, self._allowed(feeds)).tolist()

        finished, keep, kept_columns = [], [], []
        for index, (row, tokens) in enumerate(zip(self.rows, feeds, strict=True)):
            accepted = []  # the model's picks: after each fed token that matched the previous pick
            for position, pick in enumerate(picks[: len(tokens)]):
                accepted.append(pick)
                if position + 1 == len(tokens) or tokens[position + 1] != pick:
                    break
            del picks[: len(tokens)]
            if self._append(row, accepted):
                finished.append(row)
                continue
            keep.append(index)
            kept_columns.append(len(accepted))  # the fed tokens whose states are now the row's
            if len(accepted) < fed:
                self.positions[index, self.width - fed + len(accepted) :] = -1
            row.next_token, row.next_position = row.generated[-1], row.next_position + len(accepted)
            if row.lookup is not None:
                row.lookup.extend(accepted)
        if not keep:
            self.clear()
            return finished
        unused = fed - max(kept_columns)  # trailing columns that no remaining row keeps
        if unused:
            drop_last(self.cache, unused)
            self.positions = self.positions[:, : self.width - unused]
        if finished:
            self._keep(keep)
        return finished

    def drop(self, leaving: list[Row]) -> None:
        """Take these rows out of the batch before they finish (their calls were cancelled)."""
        keep = [index for index, row in enumerate(self.rows) if not any(row is gone for gone in leaving)]
        if keep:
            self._keep(keep)
        else:
            self.clear()

    def _feeds(self) -> list[list[int]]:
        """Each row's next token, followed by its draft where it has one and the step has room."""
        per_row = min(DRAFT_TOKENS_MAX, STEP_TOKENS_MAX // len(self.rows) - 1)
        feeds = []
        for row in self.rows:
            room = min(per_row, row.max_new_tokens - len(row.generated) - 1)
            draft = row.lookup.draft(room) if row.lookup is not None else []
            if row.constraint is not None:
                draft = row.constraint.usable_draft(draft)
            feeds.append([row.next_token, *draft])
        return feeds

    def _allowed(self, feeds: list[list[int]]):
        """A (fed tokens, vocabulary) boolean mask of the tokens each pick may be, in row order: a constrained row's
        pattern after each of its fed tokens, everything for the others; None when no row is constrained."""
        import torch

        if all(row.constraint is None for row in self.rows):
            return None
        masks = []
        for row, tokens in zip(self.rows, feeds, strict=True):
            if row.constraint is None:
                masks.append(torch.ones((len(tokens), self.vocabulary_size), dtype=torch.bool))
            else:
                masks.append(row.constraint.masks_along(tokens[1:]))
        return torch.cat(masks).to(self.positions.device)

    def _append(self, row: Row, tokens: list[int]) -> bool:
        """Give ``row`` its new tokens one by one; whether it finished (the tokens after its end are dropped)."""
        for token in tokens:
            row.generated.append(token)
            if row.constraint is not None:
                row.constraint.accept([token])
            if len(row.generated) >= row.max_new_tokens or row.finished(row.generated):
                return True
        return False

    def _picks(self, ids, query_positions, valid, allowed=None):
        """The model's pick after every valid fed token, in row order (a 1-d tensor), among the ``allowed`` tokens
        where a mask is given (``_allowed``)."""
        inputs = {"input_ids": ids, "position_ids": query_positions,
                  "attention_mask": self._masks(query_positions, self._sliding_start(query_positions)),
                  self.cache_keyword: self.cache, "use_cache": True}
        greedy = all(row.temperature <= 0 for row in self.rows)
        if self.decoder is None or self.head is None:  # the whole model: its head may rescale the logits
            logits = self.model(**inputs, logits_to_keep=ids.shape[1]).logits[valid]
            return self._pick(_masked(logits, allowed), valid)
        hidden = self.decoder(**inputs).last_hidden_state[valid]
        if greedy and self.greedy_head is not None and self.greedy_head.handles(len(hidden)):
            return self.greedy_head.argmax(hidden, allowed)
        # weight @ hidden.T keeps the big matrix on the left, where CPU BLAS splits the work well (model_parts).
        return self._pick(_masked((self.head @ hidden.T).T, allowed), valid)

    def _sliding_start(self, query_positions) -> int:
        """The first column any of this step's tokens sees through a sliding window: the columns before it are
        older than every row's window, so sliding-window layers attend from it on (``attend_from``) and read
        less of the cache. The appending cache hands those layers ``keys[:, :, attend_from:]``."""
        if not self.sliding_window:
            return 0
        oldest_seen = query_positions[:, :1] - self.sliding_window  # a column at this position or before is out of view
        seen = ((self.positions > oldest_seen).any(dim=0)).int()
        start = int(seen.argmax())
        for layer in self.cache.layers:
            if layer.is_sliding:
                layer.attend_from = start
        return start

    def _masks(self, query_positions, sliding_start: int = 0):
        """Attention masks (rows, 1, queries, columns): a token sees the columns at its position or before, and in
        sliding-window layers only the last ``window`` positions, from column ``sliding_start`` on. One mask, or one
        per layer type."""
        import torch

        columns = self.positions[:, None, None, :]
        queries = query_positions[:, None, :, None]
        full = (columns >= 0) & (columns <= queries)
        sliding = full & (columns > queries - self.sliding_window) if self.sliding_window else full
        sliding = sliding[..., sliding_start:]
        if not self.boolean_masks:
            full, sliding = (torch.zeros(m.shape, dtype=self.mask_dtype, device=m.device).masked_fill_(
                ~m, torch.finfo(self.mask_dtype).min) for m in (full, sliding))
        if self.mask_per_layer_type:
            return {"full_attention": full, "sliding_attention": sliding}
        return sliding if self.all_sliding else full

    def _pick(self, logits, valid):
        """Greedy rows take the most likely token; sampling rows (one fed token each) draw from their own generator."""
        import torch

        chosen = logits.argmax(dim=-1)
        offsets = valid.sum(dim=1).cumsum(0) - valid.sum(dim=1)
        for index, row in enumerate(self.rows):
            if row.temperature > 0:
                at = int(offsets[index])
                probs = torch.softmax(logits[at].float() / row.temperature, dim=-1)
                if row.top_p is not None and row.top_p < 1.0:
                    sorted_probs, order = probs.sort(descending=True)
                    sorted_probs[(sorted_probs.cumsum(0) - sorted_probs) > row.top_p] = 0.0  # the smallest top-p set
                    probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
                chosen[at] = torch.multinomial(probs, 1, generator=row.generator)[0]
        return chosen

    def _keep(self, indices: list[int]) -> None:
        """Keep only these rows, and drop the leading columns no row uses any more."""
        import torch

        positions = self.positions[torch.tensor(indices, device=self.positions.device)]
        unused = int((positions >= 0).any(dim=0).int().argmax())  # leading columns empty in every row left
        keep_rows(self.cache, indices, unused)
        self.rows = [self.rows[i] for i in indices]
        self.positions = positions[:, unused:]


def _masked(logits, allowed):
    """``logits`` with the entries ``allowed`` does not allow at -inf (unchanged without a mask)."""
    return logits if allowed is None else logits.masked_fill(~allowed, float("-inf"))
