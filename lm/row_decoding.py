"""Decoding a batch one token at a time, computing only the rows that are still running.

``generate`` keeps a finished row in the batch until the last row ends and pays for it at every
step; with a 262k-token vocabulary the output projection alone is a large share of a CPU step. DSPy
answers end at very different lengths (a stop string after five tokens, or max_tokens), so this
loop shrinks the batch, its cache and its attention mask to the rows still running.
"""

from collections.abc import Callable

from smelt.lm.model_parts import decoder_of, plain_output_projection


def decode_rows(
    model,
    cache,
    last_tokens,
    attention_mask,
    *,
    max_new_tokens: int,
    pick: Callable,
    finished: Callable[[list[int]], bool],
) -> list[list[int]]:
    """Generated token ids per row, each ending where ``finished`` said so or at ``max_new_tokens``.

    ``cache`` holds every prompt token but the last, left-padded (see ``row_prefill``); ``last_tokens``
    (batch,) are the prompts' last tokens and ``attention_mask`` (batch, width) covers the whole prompts.
    ``pick`` turns the last position's logits (rows, vocab) into next tokens (rows,).
    """
    import torch

    rows = list(range(last_tokens.shape[0]))
    generated: list[list[int]] = [[] for _ in rows]
    tokens = last_tokens[:, None]
    positions = attention_mask.sum(dim=1, keepdim=True) - 1
    mask = attention_mask
    decoder, head = decoder_of(model), plain_output_projection(model)
    for _ in range(max_new_tokens):
        step = dict(input_ids=tokens, attention_mask=mask, position_ids=positions, past_key_values=cache)
        if decoder is not None and head is not None:
            logits = (head @ decoder(**step, use_cache=True).last_hidden_state[:, -1, :].T).T
        else:
            logits = model(**step, use_cache=True, logits_to_keep=1).logits[:, -1, :]
        chosen = pick(logits)
        keep = []
        for index, (row, token) in enumerate(zip(rows, chosen.tolist(), strict=True)):
            generated[row].append(token)
            if len(generated[row]) < max_new_tokens and not finished(generated[row]):
                keep.append(index)
        if not keep:
            break
        if len(keep) < len(rows):
            selected = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(selected)
            rows = [rows[i] for i in keep]
            chosen, mask, positions = chosen[selected], mask[selected], positions[selected]
        tokens = chosen[:, None]
        positions = positions + 1
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
    return generated


def token_picker(temperature: float, top_p: float | None, seed: int | None, device) -> Callable:
    """Greedy (temperature 0) or nucleus sampling; a seed gives this batch its own random generator."""
    import torch

    if temperature <= 0:
        return lambda logits: logits.argmax(dim=-1)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None

    def pick(logits):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        if top_p is not None and top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            sorted_probs[(sorted_probs.cumsum(dim=-1) - sorted_probs) > top_p] = 0.0  # keep the smallest top-p set
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    return pick
