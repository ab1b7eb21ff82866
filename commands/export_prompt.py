"""prompt.json: the exact prompt a distilled program sends, so that any server can send the same bytes.

For each predictor of the program: its input and output fields, the prompt as the model reads it with a
``{field}`` placeholder per input (DSPy's field markers and the prefill, rendered as smelt renders it:
``lm.rendering``), the stop strings, max_tokens and temperature. ``render_prompt`` fills it in exactly as smelt
does; ``tests/test_export.py`` checks that against the token ids smelt's engine receives.
"""

import re
import typing
from typing import Any

from smelt.errors import SmeltError
from smelt.lm.generation import DEFAULT_MAX_TOKENS
from smelt.lm.prefill_adapter import with_stops
from smelt.lm.rendering import has_chat_template, render_chat, render_transcript

_USER = "\u27e6smelt-user-message\u27e7"  # stands for the user message while the rest of the prompt is rendered


def _sentinel(name: str) -> str:
    return f"\u27e6smelt-field-{name}\u27e7"


def prompt_spec(program, adapter, tokenizer, *, decoding: dict | None = None) -> dict:
    """The prompt of every predictor of ``program`` as ``adapter`` (a ``PrefillChatAdapter``) formats it for a model
    with ``tokenizer``."""
    predictors = {name: _predictor_prompt(name, predictor, adapter, tokenizer)
                  for name, predictor in program.named_predictors()}
    leading = tokenizer("", add_special_tokens=True)["input_ids"] if not has_chat_template(tokenizer) else []
    return {
        "format": "smelt prompt spec 1",
        "how_to_render": "prompt = before + user + after, where user is the user template with each {field} "
                         "replaced by its value as DSPy writes it (a string as it is, a list as JSON, a number "
                         "or bool as Python prints it), then stripped of whitespace at both ends "
                         "(smelt.commands.export_prompt.render_prompt)",
        "chat_template": has_chat_template(tokenizer),
        "leading_special_tokens": tokenizer.convert_ids_to_tokens(leading),
        "stops_count_after_first_text": True,
        "decoding": decoding or {},
        "predictors": predictors,
    }


def _predictor_prompt(name: str, predictor, adapter, tokenizer) -> dict:
    signature = predictor.signature
    inputs = {field: _sentinel(field) for field in signature.input_fields}
    messages = adapter.format(signature, predictor.demos, inputs)
    *head, user, prefill = messages
    if user["role"] != "user" or prefill["role"] != "assistant":
        raise SmeltError(f"predictor {name}: its prompt does not end with a user message and a prefill; smelt can "
                         "describe only the prompts of its own adapter")
    marked = render(tokenizer, [*head, {"role": "user", "content": _USER}, prefill])
    if marked.count(_USER) != 1:
        raise SmeltError(f"predictor {name}: the model's chat template changes the user message, so prompt.json "
                         "cannot describe its prompt")
    before, after = marked.split(_USER)
    template = user["content"]
    for field in signature.input_fields:
        if template.count(_sentinel(field)) != 1 or any(_sentinel(field) in m["content"] for m in head):
            raise SmeltError(f"predictor {name}: input {field} does not appear once in its prompt")
        template = template.replace(_sentinel(field), "{" + field + "}")
    entry = {
        "input_fields": {field: _type_name(info.annotation) for field, info in signature.input_fields.items()},
        "output_fields": {field: _type_name(info.annotation) for field, info in signature.output_fields.items()},
        "prompt": before + template + after,
        "before": before,
        "user": template,
        "after": after,
        "prefill": prefill["content"],
        "stop": with_stops(predictor.config, adapter.stop_strings(signature))["stop"],
        "max_tokens": predictor.config.get("max_tokens") or DEFAULT_MAX_TOKENS,
        "temperature": predictor.config.get("temperature") or 0.0,
        "answer": _answer_note(signature, prefill["content"]),
    }
    if render_prompt(entry, inputs) != render(tokenizer, messages):  # the template renders values as smelt does
        raise SmeltError(f"predictor {name}: the model's chat template renders input values in a way prompt.json "
                         "cannot describe")
    return entry


def render(tokenizer, messages: list[dict[str, str]]) -> str:
    """The prompt text smelt's engine tokenizes for these messages (``lm.rendering.encode_prompt``)."""
    return render_chat(tokenizer, messages) if has_chat_template(tokenizer) else render_transcript(messages)


def render_prompt(predictor: dict, values: dict[str, Any]) -> str:
    """One predictor's prompt (an entry of prompt.json's ``predictors``) with ``values`` for its input fields."""
    fields = predictor["input_fields"]
    missing = [field for field in fields if field not in values]
    if missing:
        raise SmeltError(f"no value for input {', '.join(missing)}")
    pattern = re.compile("|".join(re.escape("{" + field + "}") for field in fields))
    user = pattern.sub(lambda found: format_value(fields[found.group(0)[1:-1]], values[found.group(0)[1:-1]]),
                       predictor["user"])
    return predictor["before"] + user.strip() + predictor["after"]


def format_value(type_name: str, value: Any) -> str:
    """An input value of a field of this type as DSPy writes it into the prompt: a string as it is, a list as JSON, a
    number or bool as Python prints it (``dspy.adapters.utils.format_field_value``)."""
    from dspy.adapters.utils import format_field_value
    from pydantic.fields import FieldInfo

    return format_field_value(FieldInfo(annotation=_TYPES.get(type_name, str)), value)


_TYPES = {str(kind) if typing.get_origin(kind) else kind.__name__: kind
          for kind in (str, int, float, bool, list[str], list[int], list[float], list[bool])}


def _type_name(annotation) -> str:
    return str(annotation) if typing.get_origin(annotation) else getattr(annotation, "__name__", str(annotation))


def _answer_note(signature, prefill: str) -> str:
    outputs = list(signature.output_fields)
    if len(outputs) == 1:
        return (f"the completion, up to the first stop string and stripped of surrounding whitespace, is the value "
                f"of {outputs[0]} (the prompt ends with its marker, {prefill.strip()})")
    rest = ", ".join(f"[[ ## {field} ## ]]" for field in outputs[1:])
    return (f"the completion starts with the value of {outputs[0]}, then each other output field after its marker "
            f"({rest}), and ends with [[ ## completed ## ]]")
