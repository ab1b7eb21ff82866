"""A DSPy ChatAdapter that small and base models can follow.

A 270M base model does not write DSPy's ``[[ ## answer ## ]]`` markers on its own, so every
plain ChatAdapter call is a parse error. This adapter writes the first output field's marker
into the prompt (an assistant prefill), so the model only has to write the value; it stops
generation at the completion marker or when the model starts to invent a new input field, and
parses leniently. What still fails to parse raises ``AdapterParseError``, which the evaluation
loop records as a failed example.

A program's request for answers in a declared shape (``response_format`` ``smelt_fields``:
``smelt.programs.answer_constraint``) becomes one pattern over the text the model writes after the prefill: each
field's value, the markers between them, then the end (``completion_pattern``). The engine, or the completion
server, holds the model's tokens to it; a model whose engine takes no pattern answers unconstrained, said once.

``instructions=False`` is the prompt of a distilled student: DSPy's system message (field list,
format and task instructions, about half of a doc-QA prompt) is left out, because the LoRA
adapter has learned the task from examples in exactly this leaner format.
"""

from typing import Any

from dspy.adapters.chat_adapter import ChatAdapter

from smelt.lm.completion_pattern import (
    COMPLETED_MARKER,
    completion_format,
    completion_pattern,
    field_marker,
    requested_values,
    takes_completion_pattern,
    without_constraint,
)


def with_stops(lm_kwargs: dict[str, Any], stops: list[str]) -> dict[str, Any]:
    """``lm_kwargs`` with ``stops`` first in its ``stop`` list, followed by any stop strings it already had."""
    extra = lm_kwargs.get("stop") or []
    return {**lm_kwargs, "stop": list(dict.fromkeys([*stops, *([extra] if isinstance(extra, str) else extra)]))}


class PrefillChatAdapter(ChatAdapter):
    def __init__(self, instructions: bool = True, **kwargs):
        kwargs.setdefault("use_json_adapter_fallback", False)  # a second format rarely rescues a small model
        super().__init__(**kwargs)
        self.instructions = instructions

    def prefill(self, signature) -> str:
        return field_marker(next(iter(signature.output_fields))) + "\n"

    def user_message_output_requirements(self, signature) -> str | None:
        # With one output field the prefill has already written its marker. Left in, the reminder
        # ("Respond with ... `[[ ## answer ## ]]` ...") leads a base model to recite markers instead
        # of answering: on short doc-QA prompts a third of the answers came back empty.
        if len(signature.output_fields) == 1:
            return None
        return super().user_message_output_requirements(signature)

    def format(self, signature, demos, inputs) -> list[dict[str, Any]]:
        messages = super().format(signature, demos, inputs)
        if not self.instructions:
            messages = [m for m in messages if m["role"] != "system"]
        return [*messages, {"role": "assistant", "content": self.prefill(signature)}]

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        return super().__call__(lm, self._request(lm, lm_kwargs, signature), signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        return await super().acall(lm, self._request(lm, lm_kwargs, signature), signature, demos, inputs)

    def _request(self, lm, lm_kwargs, signature) -> dict[str, Any]:
        """The call's keyword arguments: its stop strings, and a program's requested answer shape as the pattern of
        this adapter's completion text (dropped, and said once, where the model's engine takes no pattern)."""
        lm_kwargs = self._with_stops(lm_kwargs, signature)
        values = requested_values(lm_kwargs.get("response_format"))
        if values is None:
            return lm_kwargs
        if not takes_completion_pattern(lm):
            return without_constraint(lm_kwargs, getattr(lm, "model", "this model"),
                                      "its engine takes no pattern over DSPy's marker format")
        pattern = completion_pattern(list(signature.output_fields), values)
        return {**lm_kwargs, "response_format": completion_format(pattern)}

    def stop_strings(self, signature) -> list[str]:
        """Where generation ends: the completion marker, or the model starting to invent an input field."""
        stops = [COMPLETED_MARKER, *(field_marker(name) for name in signature.input_fields)]
        if len(signature.output_fields) == 1:
            # The prefilled field is the only one: after its value, a blank line can only lead to the end marker.
            stops.append("\n\n")
        return stops

    def _with_stops(self, lm_kwargs, signature) -> dict[str, Any]:
        return with_stops(lm_kwargs, self.stop_strings(signature))

    def parse(self, signature, completion: str) -> dict[str, Any]:
        text = completion
        first = field_marker(next(iter(signature.output_fields)))
        if not text.lstrip().startswith(first):
            text = self.prefill(signature) + text
        # A generation cut by max_tokens can end inside a marker: drop the fragment.
        head, bracket, tail = text.rpartition("[[")
        if bracket and "]]" not in tail:
            text = head
        return super().parse(signature, text)
