"""Holding a request's tokens to its answer pattern (``completion_pattern``) while the engine decodes, with llguidance.

llguidance was chosen by measurement against xgrammar and outlines on the embedded model's tokenizer
(``bench/constraint_libraries.py``; docs/benchmarks.md, "Constrained decoding").

- ``AnswerPatterns``: one tokenizer's patterns, compiled on first use and kept (the tokenizer's token table is built
  once per process, on the first constrained request). A pattern llguidance cannot take (a look-around, a back
  reference) runs unconstrained, said once per pattern.
- ``RowMatcher``: one request's place in its pattern. Before each pick the running batch asks it which tokens may
  come next (``allowed``), as a mask over the vocabulary; a draft (``prompt_lookup``) is cut to the tokens the
  pattern accepts, and each drafted position gets the mask it would have one token at a time (``masks_along``), so
  a draft never changes an answer.
- ``MatcherLogits``: the same for ``generate``'s padded batches (a logits processor, one matcher per row).
"""

import threading
from pathlib import Path

from smelt.lm.completion_pattern import say_unconstrained

_SHIFTS = None  # torch.arange(32), made on first use


class AnswerPatterns:
    """The compiled answer patterns of one model's tokenizer; thread-safe."""

    def __init__(self, tokenizer, vocabulary_size: int, name: str):
        self.tokenizer = tokenizer
        self.vocabulary_size = vocabulary_size  # the model's logits (may exceed the tokenizer's own tokens)
        self.name = name
        self._ll_tokenizer = None
        self._compiled: dict[str, object | None] = {}
        self._lock = threading.Lock()

    def compiled(self, pattern: str) -> "CompiledPattern | None":
        """``pattern`` compiled for this tokenizer, or None when llguidance cannot take it: that request, and every
        later one with this pattern, runs unconstrained (said once)."""
        with self._lock:
            if pattern not in self._compiled:
                self._compiled[pattern] = self._compile(pattern)
            return self._compiled[pattern]

    def _compile(self, pattern: str):
        import llguidance

        if self._ll_tokenizer is None:
            self._ll_tokenizer = self._prepared_tokenizer()
        grammar = llguidance.LLMatcher.grammar_from_regex(pattern)
        problem = llguidance.LLMatcher.validate_grammar(grammar, self._ll_tokenizer)
        if problem and not problem.startswith("WARNING"):
            reason = " ".join(problem.split())[:160]
            say_unconstrained(self.name, f"llguidance cannot take the pattern {_shown(pattern)}: {reason}")
            return None
        template = llguidance.LLMatcher(self._ll_tokenizer, grammar, log_level=0)
        return CompiledPattern(template, self.vocabulary_size, self.tokenizer.eos_token_id)

    def _prepared_tokenizer(self):
        """llguidance's token table. For the embedded model, read from the tokenizer.json smelt itself wrote when it
        converted the model, which holds every token (this spares serializing the loaded tokenizer first:
        docs/benchmarks.md); for any other model, from the loaded tokenizer (a hub folder's tokenizer.json may lack
        tokens its tokenizer_config.json adds)."""
        import llguidance
        import llguidance.hf

        from smelt.lm.embedded import embedded_model_dir

        folder = Path(str(getattr(self.tokenizer, "name_or_path", "")))
        if folder.is_dir() and folder.resolve() == embedded_model_dir().resolve():
            return llguidance.LLTokenizer(str(folder / "tokenizer.json"), n_vocab=self.vocabulary_size,
                                          eos_token=self.tokenizer.eos_token_id)
        return llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=self.vocabulary_size)


class CompiledPattern:
    """A pattern compiled for one tokenizer: each request starts a matcher of its own from it."""

    def __init__(self, template, vocabulary_size: int, end_id: int):
        self.template = template
        self.vocabulary_size = vocabulary_size
        self.end_id = end_id  # the end token the pattern allows once complete (the tokenizer's eos)


class RowMatcher:
    """One request's matcher: which tokens may follow what it has generated so far."""

    def __init__(self, compiled: CompiledPattern):
        self.matcher = compiled.template.deep_copy()
        self.vocabulary_size = compiled.vocabulary_size
        self.end_id = compiled.end_id

    def allowed(self):
        """A boolean mask over the vocabulary: the tokens the pattern allows next (the end token once it is
        complete)."""
        return self.masks_along([])[0]

    def usable_draft(self, draft: list[int]) -> list[int]:
        """The longest start of ``draft`` the pattern accepts."""
        return draft[: self.matcher.validate_tokens(draft)] if draft else draft

    def masks_along(self, draft: list[int]):
        """The masks before the next token and after each token of ``draft`` (which ``usable_draft`` gave): a
        (1 + len(draft), vocabulary) boolean tensor. The matcher is left where it was."""
        import torch

        words = torch.empty((len(draft) + 1, (self.vocabulary_size + 31) // 32), dtype=torch.int32)
        for index in range(len(draft) + 1):
            if index:
                self.matcher.consume_token(draft[index - 1])
            row = words[index]
            self.matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * row.element_size())
        if draft:
            self.matcher.rollback(len(draft))
        masks = unpack_bits(words, self.vocabulary_size)
        masks[~masks.any(dim=1), self.end_id] = True  # a matcher in error (it never should be) ends the answer
        return masks

    def accept(self, tokens: list[int]) -> None:
        for token in tokens:
            self.matcher.consume_token(token)


def unpack_bits(words, vocabulary_size: int):
    """int32 words of a bit mask (bit j of word i: token 32 i + j) as booleans, one row per row of ``words``."""
    import torch

    global _SHIFTS
    if _SHIFTS is None:
        _SHIFTS = torch.arange(32, dtype=torch.int32)
    bits = (words.unsqueeze(-1) >> _SHIFTS) & 1
    return bits.view(words.shape[0], -1)[:, :vocabulary_size].bool()


class MatcherLogits:
    """A transformers logits processor holding each row of a padded ``generate`` call to its pattern: a row's
    matcher advances by the token the row took at the last step, and every token it does not allow is set to -inf
    (before temperature and top-p, which ``generate`` applies after the processors it is given)."""

    def __init__(self, compiled: CompiledPattern, rows: int, end_ids: set[int]):
        self.rows = [RowMatcher(compiled) for _ in range(rows)]
        self.end_ids = end_ids
        self.started = False
        self.done = [False] * rows

    def __call__(self, input_ids, scores):
        import torch

        for index, row in enumerate(self.rows):
            if self.started and not self.done[index]:
                token = int(input_ids[index, -1])
                if token in self.end_ids:
                    self.done[index] = True
                else:
                    row.accept([token])
            if not self.done[index]:
                allowed = row.allowed().to(scores.device)
                scores[index] = torch.where(allowed[: scores.shape[1]], scores[index], float("-inf"))
        self.started = True
        return scores


def _shown(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 80 else pattern[:77] + "...")
