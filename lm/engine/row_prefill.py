"""The prompt pass of one request, starting from the longest prefix the prefix cache holds.

A left-padded ``generate`` runs every row of a batch at the width of the longest prompt and
recomputes the instructions every DSPy prompt of a program starts with. On a CPU, where the prompt
pass is compute-bound, both are wasted work. Here each prompt runs on its own at its own length,
from the states of its longest cached prefix (``prefix_cache``); what it computes is cached in turn,
so the next prompt of the same program, in this batch or a later one, skips the shared part.

The prompt's last token is left out: the decode loop (``running_batch``) feeds it, so its logits
come from the same step that produces every later token.
"""

from smelt.lm.engine.model_parts import cache_keyword, decoder_of
from smelt.lm.engine.prefix_cache import PrefixCache


def supports_row_prefill(model) -> bool:
    """Whether the model's cache is made of plain full or sliding-window ``DynamicCache`` layers (the layout the
    prefix cache and the running batch handle; not static, quantized or state-space caches), and its attention
    takes the running batch's masks (SDPA or eager; not flash or flex attention)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if getattr(model.config, "_attn_implementation", "sdpa") not in ("sdpa", "eager"):
        return False
    cache = DynamicCache(config=model.config)
    plain = (DynamicLayer, DynamicSlidingWindowLayer)
    return bool(cache.layers) and all(type(layer) in plain for layer in cache.layers)


def prefill_row(model, ids: list[int], prefix_cache: PrefixCache | None):
    """A batch-1 ``DynamicCache`` holding ``ids[:-1]`` (``ids`` has at least two tokens) in every layer, sliding-window
    layers included: the running batch applies their window with its attention masks."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    prompt = ids[:-1]
    reused, states = prefix_cache.longest_prefix(prompt) if prefix_cache is not None else (0, None)
    cache = DynamicCache(config=model.config)
    for index, layer in enumerate(cache.layers):
        if layer.is_sliding:
            # Keep every state, not just the window: the prefix cache must be able to serve any shorter prefix.
            # Attention still sees only the window (the layer returns the last window-1 states plus the new ones).
            layer.activate_past_recording()
        if states is not None:
            keys, values = states[index]
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
            if layer.is_sliding:
                layer.cumulative_length = reused
    if reused < len(prompt):
        _extend(model, cache, prompt[reused:], reused, device)
    if prefix_cache is not None and reused < len(prompt):
        prefix_cache.insert(prompt, [(layer.keys, layer.values) for layer in cache.layers])
    for layer in cache.layers:
        if layer.is_sliding:
            layer.record_past = False
    return cache


def _extend(model, cache, ids: list[int], start: int, device) -> None:
    """Run ``ids`` (at positions ``start``...) through the model into ``cache``.

    The prompt pass needs no logits: the decoder stack alone skips the output projection, the largest
    matrix of a small model with a big vocabulary."""
    import torch

    decoder = decoder_of(model)
    inputs = {
        "input_ids": torch.tensor([ids], device=device),
        "position_ids": torch.arange(start, start + len(ids), device=device)[None],
        cache_keyword(decoder if decoder is not None else model): cache,
        "use_cache": True,
    }
    if decoder is not None:
        decoder(**inputs)
    else:
        model(**inputs, logits_to_keep=1)
