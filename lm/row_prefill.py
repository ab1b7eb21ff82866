"""Prefilling a batch row by row: no padding computed, and the prompts' common prefix computed once.

A left-padded ``generate`` runs every row of the prompt at the width of the longest one, and
recomputes the instructions that every DSPy prompt of a signature starts with. On a CPU, where
the prompt pass is compute-bound, both are wasted work. ``prefill_rows`` computes the shared
prefix once, continues each row from a copy of it at that row's own length, and lays the rows'
caches out exactly as a left-padded prompt pass would have left them (zeros where padding sits,
masked out by the attention mask). The decode loop (``row_decoding``) starts from the last prompt token.
"""

import copy

from smelt.lm.model_parts import decoder_of


def common_prefix_length(prompts: list[list[int]]) -> int:
    """How many leading tokens all prompts share (at most the shortest prompt's length)."""
    first, length = prompts[0], min(len(ids) for ids in prompts)
    for ids in prompts[1:]:
        length = next((i for i in range(length) if ids[i] != first[i]), length)
    return length


def prefill_rows(model, prompts: list[list[int]]):
    """A cache holding every prompt except its last token, left-padded to the longest; None if unsupported.

    Only plain ``DynamicCache`` layers (full and sliding-window attention) can be laid out this way;
    for any other cache the caller falls back to a padded prompt pass.
    """
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if min(len(ids) for ids in prompts) < 2:
        return None
    device = next(model.parameters()).device
    shared = min(common_prefix_length(prompts), min(len(ids) for ids in prompts) - 1)
    # The prompt pass needs no logits (the decode loop computes the last token's): run the decoder stack alone,
    # which skips the output projection, the largest matrix of a small model with a big vocabulary.
    decoder = decoder_of(model)

    def extend(cache, ids: list[int], start: int) -> None:
        inputs = dict(
            input_ids=torch.tensor([ids], device=device),
            position_ids=torch.arange(start, start + len(ids), device=device)[None],
            past_key_values=cache,
            use_cache=True,
        )
        if decoder is not None:
            decoder(**inputs)
        else:
            model(**inputs, logits_to_keep=1)

    prefix = DynamicCache(config=model.config)
    if any(type(layer) not in (DynamicLayer, DynamicSlidingWindowLayer) for layer in prefix.layers):
        return None
    if shared:
        extend(prefix, prompts[0][:shared], 0)
    rows = []
    for ids in prompts:
        cache = copy.deepcopy(prefix)
        if len(ids) - 1 > shared:
            extend(cache, ids[shared:-1], shared)
        rows.append(cache)
    return _left_padded(rows)


def _left_padded(rows):
    """Merge batch-1 caches into one batch, each row's keys and values right-aligned like left padding."""
    import torch
    from torch.nn.functional import pad

    merged = rows[0]
    for index, layer in enumerate(merged.layers):
        layers = [cache.layers[index] for cache in rows]
        width = max(row.keys.shape[-2] for row in layers)
        keys = torch.cat([pad(row.keys, (0, 0, width - row.keys.shape[-2], 0)) for row in layers])
        values = torch.cat([pad(row.values, (0, 0, width - row.values.shape[-2], 0)) for row in layers])
        if hasattr(layer, "cumulative_length"):  # sliding window: how many tokens the longest row has seen
            layer.cumulative_length = max(row.cumulative_length for row in layers)
        layer.keys, layer.values = keys, values
    return merged
