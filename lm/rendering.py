"""Turning chat messages into the exact token ids an in-process model sees.

The engine and the distillation trainer both call ``encode_prompt`` so a student is trained on
precisely the tokens it will receive at inference.
"""

from typing import Any


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def messages_from_request(request) -> list[dict[str, str]]:
    """A dspy.lm15 Request as plain role/content dicts (system first)."""
    messages = []
    system = request.system
    if system:
        text = system if isinstance(system, str) else "".join(getattr(part, "text", "") for part in system)
        messages.append({"role": "system", "content": text})
    for message in request.messages:
        messages.append({"role": message.role, "content": message.text or ""})
    return messages


def render_transcript(messages: list[dict[str, str]]) -> str:
    """A plain transcript for base models without a chat template.

    DSPy's chat format already marks every field with ``[[ ## name ## ]]``, so the messages read
    as one document when joined by blank lines. A trailing assistant message is a prefill: it is
    kept exactly as written so the model continues it.
    """
    *head, last = messages
    parts = [m["content"].strip() for m in head]
    if last["role"] == "assistant":
        return "\n\n".join([*parts, last["content"].lstrip()])
    return "\n\n".join([*parts, last["content"].strip()]) + "\n\n"


def render_chat(tokenizer, messages: list[dict[str, str]]) -> str:
    prefill = messages[-1]["role"] == "assistant"
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill
        )
    except Exception:  # templates that reject a system role (some Gemma/Mistral ones): fold it into the user turn
        if messages[0]["role"] != "system" or len(messages) < 2:
            raise
        folded = [{"role": messages[1]["role"], "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
        return tokenizer.apply_chat_template(
            folded + messages[2:], tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill
        )


def encode_prompt(tokenizer, messages: list[dict[str, Any]]) -> list[int]:
    """Token ids of the prompt for these messages, special tokens included."""
    if has_chat_template(tokenizer):
        return tokenizer(render_chat(tokenizer, messages), add_special_tokens=False)["input_ids"]
    return tokenizer(render_transcript(messages), add_special_tokens=True)["input_ids"]
