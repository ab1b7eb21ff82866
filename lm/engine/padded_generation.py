"""Generation without continuous batching, for models whose cache is not made of plain full or sliding-window
layers: one transformers ``generate`` call over left-padded prompts with equal settings, each row stopping at its
end token, its first stop string, or once its caller's ``CallScope`` is cancelled, and held to the settings' answer
pattern by a logits processor (``constrained_rows.MatcherLogits``) where they have one."""

from transformers import StoppingCriteria

from smelt.lm.engine.constrained_rows import MatcherLogits
from smelt.lm.generation import GenerationSettings, end_token_ids, find_stop


def generate_padded(model, tokenizer, prompts: list[list[int]], settings: GenerationSettings,
                    scopes: list | None = None, constraint=None) -> list[list[int]]:
    """The new tokens of each prompt, from one ``generate`` call over the left-padded batch; a row whose scope (in
    ``scopes``, one per prompt or None) is cancelled stops at the next step. With ``constraint`` (the settings'
    pattern, compiled), each row picks only the tokens it allows."""
    import torch

    pad_id = tokenizer.pad_token_id
    input_ids, attention_mask = left_padded(prompts, pad_id)
    width = input_ids.shape[1]
    device = next(model.parameters()).device
    kwargs = dict(
        max_new_tokens=settings.max_new_tokens,
        pad_token_id=pad_id,
        do_sample=settings.temperature > 0,
    )
    if settings.temperature > 0:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p or 1.0, top_k=0)
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    criteria = [StopOnStrings(tokenizer, settings.stop, width)] if settings.stop else []
    if scopes and any(scope is not None for scope in scopes):
        criteria.append(StopWhenCancelled(scopes))
    if criteria:
        kwargs["stopping_criteria"] = criteria
    if constraint is not None:
        kwargs["logits_processor"] = [MatcherLogits(constraint, len(prompts), set(end_token_ids(model, tokenizer)))]
    output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs)
    return [row[width:].tolist() for row in output]


def left_padded(prompts: list[list[int]], pad_id: int):
    """(input_ids, attention_mask): the prompts right-aligned in one tensor, padded on the left with ``pad_id``."""
    import torch

    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


class StopOnStrings(StoppingCriteria):
    """Per-row stopping on stop strings: a row is done once its generated text contains one."""

    def __init__(self, tokenizer, stops: tuple[str, ...], prompt_width: int):
        self.tokenizer = tokenizer
        self.stops = stops
        self.prompt_width = prompt_width

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = []
        for row in input_ids:
            # Answers are short (tens of tokens): decoding all generated tokens each step costs little.
            text = self.tokenizer.decode(row[self.prompt_width:], skip_special_tokens=True)
            done.append(find_stop(text, self.stops) >= 0)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class StopWhenCancelled(StoppingCriteria):
    """A row is done once the ``CallScope`` of its call is cancelled (nobody waits for its answer any more)."""

    def __init__(self, scopes: list):
        self.scopes = scopes

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.tensor([scope is not None and scope.cancelled for scope in self.scopes], dtype=torch.bool,
                            device=input_ids.device)
