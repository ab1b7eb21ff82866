"""What one request asks of the engine and what it gets back: its ``GenerationSettings`` (from DSPy's request
config), its ``Generation``, and where an answer ends: at an end token, at the first stop string after the answer's
first non-blank character, or after ``max_new_tokens``."""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from smelt.lm.completion_pattern import completion_pattern_of

DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class GenerationSettings:
    """How one request is answered; requests with equal settings may share a padded ``generate`` call."""

    max_new_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    pattern: str | None = None  # the answer's completion text must match it (``completion_pattern``)

    @classmethod
    def from_config(cls, config) -> "GenerationSettings":
        return cls(
            max_new_tokens=config.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=float(config.temperature or 0.0),
            top_p=config.top_p,
            stop=tuple(config.stop or ()),
            seed=config.seed,
            pattern=completion_pattern_of(config.response_format),
        )


@dataclass
class Generation:
    """One request's answer (stop string and end token cut off) and its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


def end_token_ids(model, tokenizer) -> list[int]:
    """The tokens that end an answer: the model's generation config's end tokens, the tokenizer's, and padding."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = eos if isinstance(eos, list) else [eos]
    ids = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if tokenizer.pad_token_id is not None:
        ids.append(tokenizer.pad_token_id)
    return ids


def find_stop(text: str, stops: tuple[str, ...]) -> int:
    """Where the first stop string starts, or -1. Stops count only after the first non-blank character:
    a small model often opens its answer with a blank line, which must not end it empty."""
    start = len(text) - len(text.lstrip())
    hits = [text.find(s, start) for s in stops]
    return min((h for h in hits if h >= 0), default=-1)


def settled_text(text: str, stops: tuple[str, ...]) -> str:
    """The part of a partial answer's text that later tokens cannot change, for streaming: up to its first stop
    string; else all of it less a trailing incomplete character (a byte-level token decodes as U+FFFD until the
    rest of its bytes arrive) and less a tail that may be the start of a stop string."""
    stop_at = find_stop(text, stops)
    if stop_at >= 0:
        return text[:stop_at]
    text = text.rstrip("\ufffd")
    held = max((size for stop in stops for size in range(min(len(stop) - 1, len(text)), 0, -1)
                if text.endswith(stop[:size])), default=0)
    return text[: len(text) - held]


def stream_pieces(partial_texts: Iterable[str], stops: tuple[str, ...], final_text: Callable[[], str]) -> Iterator[str]:
    """The pieces of an answer's text as it grows: of each partial text, the settled part not sent yet
    (``settled_text``), then what the final text adds. Nothing sent is taken back, and the pieces together are the
    final text."""
    sent = ""
    for text in partial_texts:
        shown = settled_text(text, stops)
        if len(shown) > len(sent) and shown.startswith(sent):
            yield shown[len(sent):]
            sent = shown
    final = final_text()
    if len(final) > len(sent) and final.startswith(sent):
        yield final[len(sent):]


def finished_test(model, tokenizer, settings: GenerationSettings) -> Callable[[list[int]], bool]:
    """A row is finished at an end token or once its text holds a stop string."""
    end_ids = set(end_token_ids(model, tokenizer))

    def finished(tokens: list[int]) -> bool:
        if tokens[-1] in end_ids:
            return True
        if not settings.stop:
            return False
        return find_stop(tokenizer.decode(tokens, skip_special_tokens=True), settings.stop) >= 0

    return finished


def decode_generation(model, tokenizer, generated: list[int], prompt_tokens: int,
                      settings: GenerationSettings) -> Generation:
    """The answer in ``generated`` (new tokens only): cut at the first end token and the first stop string;
    finish reason "length" when neither ended it and it used every one of ``max_new_tokens``."""
    end_ids = set(end_token_ids(model, tokenizer))
    cut = next((i for i, token in enumerate(generated) if token in end_ids), None)
    hit_end = cut is not None
    tokens = generated[:cut] if hit_end else generated
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    stop_at = find_stop(text, settings.stop)
    if stop_at >= 0:
        text = text[:stop_at]
    finished = hit_end or stop_at >= 0 or len(tokens) < settings.max_new_tokens
    return Generation(text, prompt_tokens, len(tokens), "stop" if finished else "length")
