"""Drafts of the next tokens, looked up in the request's own prompt and answer (prompt-lookup decoding).

A document-QA answer copies runs of the document, and DSPy's field markers repeat the demos'; a small
model that rambles repeats its own lines. So the tokens after the latest earlier occurrence of the
answer's last few tokens are a good guess at what comes next. The running batch feeds such a draft
together with the row's next token, and keeps the drafted tokens the model itself picks at each
position (the idea of prompt lookup decoding, Saxena 2023, also in transformers' ``generate``):
greedy answers are unchanged, and a step that verifies a draft costs little more than a one-token
step where decoding is bound by reading the weights (small batches on a CPU, most batches on a GPU).

Drafts of up to 7 tokens after a match of up to 3: several tokens per step on doc_qa's answers
(docs/benchmarks.md).
"""

_LONGEST_MATCH = 3  # tokens of the answer's end looked up, longest first


class PromptLookup:
    """The tokens of one request so far (prompt, then answer), indexed by their short runs."""

    def __init__(self, tokens: list[int]):
        self.tokens: list[int] = []
        self._latest: dict[tuple[int, ...], int] = {}  # a run of 1-3 tokens -> where its latest occurrence ends
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            end = len(self.tokens)
            # Index the runs ending here before the new token: the current run never finds itself.
            for size in range(1, min(_LONGEST_MATCH, end) + 1):
                self._latest[tuple(self.tokens[end - size : end])] = end
            self.tokens.append(token)

    def draft(self, count: int) -> list[int]:
        """Up to ``count`` tokens that followed the latest earlier occurrence of the longest matching run."""
        if count <= 0:
            return []
        for size in range(min(_LONGEST_MATCH, len(self.tokens)), 0, -1):
            end = self._latest.get(tuple(self.tokens[-size:]))
            if end is not None:
                return self.tokens[end : end + count]
        return []
