"""How likely a model finds each of several continuations of one prompt: the log-probability of every token of
every continuation, from one prompt pass.

The prompt runs once through the decoder stack into a key/value cache of its own; the continuations then run
together in one batch on copies of that cache, each fed after the prompt's last token, right-padded to the longest
(a causal model's real tokens never attend to the padding after them). The result equals each ``prompt +
continuation`` run alone through the whole model, up to the order of floating-point sums.

Safe to call from any thread while the engine's worker decodes: it reads the shared weights under
``torch.inference_mode`` and builds its own cache, leaving the engine's queue, running batch and prefix cache
alone.
"""

from smelt.lm.engine.model_parts import cache_keyword, decoder_of


def continuation_logprobs(model, prompt_ids: list[int], continuations: list[list[int]],
                          pad_id: int = 0) -> list[list[float]]:
    """Per continuation, the log-probability of each of its tokens after ``prompt_ids`` and the tokens before it
    (``prompt_ids`` has at least two tokens; every continuation at least one)."""
    import torch
    from transformers import DynamicCache

    if len(prompt_ids) < 2 or not continuations or not all(continuations):
        raise ValueError("a prompt of at least two tokens, and continuations of at least one token, are needed")
    device = next(model.parameters()).device
    head = prompt_ids[:-1]  # the last prompt token is fed with each continuation: its logits score their first token
    width = 1 + max(len(tokens) for tokens in continuations)
    rows = torch.full((len(continuations), width), pad_id, dtype=torch.long, device=device)
    for row, tokens in enumerate(continuations):
        rows[row, : 1 + len(tokens)] = torch.tensor([prompt_ids[-1], *tokens], device=device)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        _run(model, cache, torch.tensor([head], device=device), 0, logits=False)
        cache.batch_repeat_interleave(len(continuations))
        logits = _run(model, cache, rows, len(head), logits=True)
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        picked = logprobs.gather(-1, rows[:, 1:, None])[..., 0]
    return [picked[row, : len(tokens)].tolist() for row, tokens in enumerate(continuations)]


def _run(model, cache, ids, start: int, *, logits: bool):
    """Feed ``ids`` (positions ``start``...) into ``cache``; their logits, or nothing (the decoder stack alone skips
    the output projection, the largest matrix of a small model with a big vocabulary)."""
    import torch

    decoder = decoder_of(model) if not logits else None
    runner = decoder if decoder is not None else model
    positions = torch.arange(start, start + ids.shape[1], device=ids.device)[None].expand(ids.shape[0], -1)
    inputs = {"input_ids": ids, "position_ids": positions, cache_keyword(_unwrapped(runner)): cache,
              "use_cache": True}
    if decoder is not None:
        decoder(**inputs)
        return None
    output = model(**inputs, **({} if logits else {"logits_to_keep": 1}))
    return output.logits if logits else None


def _unwrapped(module):
    """The transformers model inside a peft wrapper (whose forward takes the cache as ``**kwargs``)."""
    get_base_model = getattr(module, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else module


def score_continuations(engine, prompt_ids: list[int], continuations: list[list[int]]) -> list[list[float]]:
    """``continuation_logprobs`` on an in-process engine's model (a distilled student's adapter included), refused
    like a request (``PromptTooLong``) when the prompt and the longest continuation exceed the model's context."""
    engine.check_fits(len(prompt_ids), max(len(tokens) for tokens in continuations))
    tokenizer = engine.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return continuation_logprobs(engine.model, prompt_ids, continuations, pad_id)
