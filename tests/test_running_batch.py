"""The running batch on other architectures and attention implementations: the same tokens as greedy ``generate``.

Tiny random models (a Llama: one full-attention mask; a Gemma 3 with a sliding window of 6 tokens:
a mask per layer type) under SDPA (boolean masks) and eager attention (additive masks). Their
prompts repeat themselves, so rows feed drafts, keep different numbers of each step's columns and
decode well past the window.
"""

import itertools

import pytest
import torch
import transformers

from smelt.lm.engine.prefix_cache import PrefixCache
from smelt.lm.engine.row_prefill import prefill_row, supports_row_prefill
from smelt.lm.engine.running_batch import Row, RunningBatch

PROMPTS = [
    [5, 6, 7, 8, 5, 6, 7, 8, 5, 6],
    [9, 10, 11, 9, 10, 11, 9, 10, 11, 9, 10, 11, 9, 10, 11, 9],
    [12, 13, 14, 15, 16, 17, 12, 13],
]
NEW_TOKENS = 20


def tiny_model(architecture: str, attention: str):
    torch.manual_seed(0)
    if architecture == "llama":
        config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
                                               head_dim=8, sliding_window=6,
                                               layer_types=["sliding_attention", "full_attention", "sliding_attention"])
        model = transformers.Gemma3ForCausalLM(config)
    model.config._attn_implementation = attention
    model.generation_config.eos_token_id = None  # no end token: every row runs its NEW_TOKENS, in generate too
    return model.eval()


def greedy_generate(model, prompt: list[int]) -> list[int]:
    with torch.inference_mode():
        output = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
    return output[0, len(prompt):].tolist()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("architecture", ["llama", "gemma3-sliding-window"])
def test_batched_rows_with_drafts_decode_what_generate_decodes_alone(architecture, attention):
    model = tiny_model(architecture, attention)
    assert supports_row_prefill(model)
    expected = [greedy_generate(model, prompt) for prompt in PROMPTS]
    batch = RunningBatch(model)
    cache = PrefixCache(2**24)
    rows = [Row(owner=i, max_new_tokens=NEW_TOKENS, finished=lambda tokens: False) for i in range(len(PROMPTS))]
    row_steps = 0  # a row's presence in a step: without drafts, one per generated token
    skipped = 0
    with torch.inference_mode():
        for row, prompt in zip(rows[:2], PROMPTS, strict=False):
            batch.admit(row, prefill_row(model, prompt, cache), prompt)
        for step in itertools.count():
            if step == 2:
                batch.admit(rows[2], prefill_row(model, PROMPTS[2], cache), PROMPTS[2])  # joins two steps later
            if not batch.rows:
                break
            row_steps += len(batch.rows)
            batch.step()
            if batch.rows:  # how far sliding-window layers skipped the oldest columns this step
                skipped = max(skipped, *(getattr(layer, "attend_from", 0) for layer in batch.cache.layers))
    assert [row.generated for row in rows] == expected
    if architecture != "llama":
        assert skipped > 0  # past the window, sliding-window layers read only the columns in view
    assert row_steps < len(PROMPTS) * NEW_TOKENS  # drafts held: some steps gave a row several tokens


def test_flash_attention_models_are_left_to_padded_generate():
    model = tiny_model("llama", "flash_attention_2")
    assert not supports_row_prefill(model)  # it would ignore the running batch's masks
