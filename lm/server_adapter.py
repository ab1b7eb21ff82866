"""The adapter of a server model (LiteLLM): DSPy's ChatAdapter, with stop strings on every request.

A server does not know where a DSPy answer ends: without stop strings a base model behind llama.cpp's server
wrote 3,692 tokens for one doc-QA answer, inventing more fields after its own. Every request therefore stops at
the completion marker or where the model starts to invent an input field, as the in-process engine's requests do
(``PrefillChatAdapter``); the token budget travels in the same request (the predictor's ``max_tokens``).

A chat model answers in its provider's format, not as a pattern over DSPy's marker format: a program's requested
answer shape (``smelt.programs.answer_constraint``) is dropped before the call, said once per model, and its answers
are checked after they are written, as without constraints.
"""

from typing import Any

from dspy.adapters.chat_adapter import ChatAdapter

from smelt.lm.completion_pattern import without_constraint
from smelt.lm.prefill_adapter import COMPLETED_MARKER, field_marker, with_stops

# OpenAI's API takes at most 4 stop strings (a fifth is a 400); vLLM, SGLang, llama.cpp and Ollama take more,
# but the first four (the completion marker first) already end every answer the way the prompt sets out.
MAX_STOPS = 4


class ServerChatAdapter(ChatAdapter):
    """ChatAdapter whose every request carries ``stop_strings`` (the caller's own stop strings after them)."""

    def stop_strings(self, signature) -> list[str]:
        """The completion marker, then the markers of the input fields (a model inventing a next question)."""
        return [COMPLETED_MARKER, *(field_marker(name) for name in signature.input_fields)][:MAX_STOPS]

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        return super().__call__(lm, self._request(lm, lm_kwargs, signature), signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        return await super().acall(lm, self._request(lm, lm_kwargs, signature), signature, demos, inputs)

    def _request(self, lm, lm_kwargs, signature) -> dict[str, Any]:
        """The call's keyword arguments: its stop strings, without a program's requested answer shape."""
        stops = with_stops(lm_kwargs, self.stop_strings(signature))
        request = {**stops, "stop": stops["stop"][:MAX_STOPS]}
        return without_constraint(request, getattr(lm, "model", "this model"),
                                  "a chat model answers in its provider's format, not DSPy's marker format")
