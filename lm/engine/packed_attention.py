"""Attention for a decode step with drafted tokens that reads each key/value head once, instead of copying it.

In a model with grouped-query attention (Gemma 3 270M: 4 query heads share 1 key/value head), transformers' SDPA
attention copies every key and value head once per query head (``repeat_kv``) whenever a mask is given and more
than one token is fed: exactly a continuous-batching step that verifies drafts. With 8 rows of 600 cached tokens
that copy is most of the step's attention, and it grows with every row and every cached token. For one fed token
transformers already avoids it by folding a group's query heads into the query length (``pack_gqa``); this does
the same for a few fed tokens: the ``groups x tokens`` queries of one key/value head attend together, each with
its token's row of the mask. Each query still computes softmax(q K^T) V over the same keys, so the result is the
same attention (the kernel may block the sums differently: last-bit differences at most).

Only several rows of short queries on a CPU (where it was measured) are folded: for one row, or a prompt pass
(hundreds of tokens), the copy is small and folding gains nothing or loses a little (``python -m
bench.packed_attention``). Everything else goes to transformers' own SDPA attention unchanged.
"""

from functools import cache

_FOLDED_TOKENS_MAX = 16  # fed tokens per row up to which the query heads are folded (a decode step's drafts)


def packed_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                          is_causal=None, **kwargs):
    """transformers' ``sdpa_attention_forward``, with a grouped-query decode step's query heads folded."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    rows, heads, tokens, width = query.shape
    if not (groups > 1 and rows > 1 and 1 < tokens <= _FOLDED_TOKENS_MAX and attention_mask is not None
            and attention_mask.dim() == 4 and attention_mask.shape[1] == 1 and not module.training
            and query.device.type == "cpu" and kwargs.get("position_bias") is None and kwargs.get("softcap") is None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    kv_heads, columns = key.shape[1], key.shape[2]
    # (rows, heads, tokens, width) -> (rows, kv_heads, groups * tokens, width): a group's heads are consecutive.
    folded = query.reshape(rows, kv_heads, groups * tokens, width)
    mask = attention_mask[:, :, None].expand(rows, 1, groups, tokens, columns)
    mask = mask.reshape(rows, 1, groups * tokens, columns)
    output = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask, scale=scaling)
    # back to (rows, tokens, heads, width), as transformers' attention functions return it
    return output.reshape(rows, heads, tokens, width).transpose(1, 2).contiguous(), None


@cache
def register_packed_attention() -> None:
    """Make transformers' ``sdpa`` attention fold short grouped-query steps (once per process).

    Registered in place of ``sdpa`` rather than under a name of its own: the running batch and the prefix cache
    check a model's implementation by that name, and whatever is not a short masked grouped-query step (training,
    prompt passes, GPUs) still runs transformers' function itself."""
    from transformers import AttentionInterface

    AttentionInterface.register("sdpa", packed_sdpa_attention)
