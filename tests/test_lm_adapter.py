"""A LoRA adapter trained on the embedded model attaches through lm_for_spec, generates, and gets its own cache name."""

import pytest


@pytest.fixture(scope="module")
def gemma_lora(embedded_model, tmp_path_factory):
    """A peft LoRA (r=4, q/v projections) on a fresh copy of the embedded model, with non-zero weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(embedded_model.source, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.02)  # a trained adapter has non-zero B; peft initialises it to zero
    folder = tmp_path_factory.mktemp("gemma-lora")
    model.save_pretrained(folder)
    return folder


def test_adapter_attaches_and_generates(gemma_lora):
    import torch

    from smelt.lm import lm_for_spec
    from smelt.lm.generation import GenerationSettings

    base = lm_for_spec("gemma-3-270m", device="cpu", max_tokens=8, cache=False)
    tuned = lm_for_spec("gemma-3-270m", device="cpu", adapter=gemma_lora, max_tokens=8, cache=False)
    assert type(tuned.engine.model).__name__ == "PeftModel"
    assert tuned.engine.model is not base.engine.model  # the base model stays as it was
    prompts = [tuned.engine.tokenizer(text)["input_ids"] for text in ("The capital of France is", "1, 2, 3,")]
    generations = tuned.engine.generate_batch(prompts, GenerationSettings(max_new_tokens=6))
    assert all(g.completion_tokens == 6 and g.text.strip() for g in generations)
    with torch.inference_mode():  # the engine's own loops run the LoRA layers: same text as peft's generate
        reference = tuned.engine.model.generate(torch.tensor(prompts[:1]), max_new_tokens=6, do_sample=False)
        assert generations[0].text == tuned.engine.tokenizer.decode(reference[0, len(prompts[0]) :])
        tuned_logits = tuned.engine.model(torch.tensor(prompts[:1])).logits
        base_logits = base.engine.model(torch.tensor(prompts[:1])).logits
    assert not torch.allclose(tuned_logits, base_logits)  # the adapter is active
    assert tuned.describe()["adapter"] == str(gemma_lora)


def test_prefix_cache_is_per_adapter_and_reuses_states_computed_with_it(gemma_lora):
    # Cached key/value states depend on the adapter: each engine (model + adapter + dtype) has its own cache,
    # and a prefix computed with the LoRA layers serves later prompts exactly as peft's own generate answers.
    import torch

    from smelt.lm import lm_for_spec
    from smelt.lm.generation import GenerationSettings

    base = lm_for_spec("gemma-3-270m", device="cpu", cache=False)
    tuned = lm_for_spec("gemma-3-270m", device="cpu", adapter=gemma_lora, cache=False)
    assert tuned.engine.prefix_cache is not base.engine.prefix_cache
    notice = "Notice: the library opens at 9:00 and closes at 19:00; on Sundays it closes at 17:00.\n"
    prompts = [tuned.engine.tokenizer(notice + q)["input_ids"] for q in ("Q: When does it open?\nA:",
                                                                          "Q: When does it close?\nA:")]
    settings = GenerationSettings(max_new_tokens=6)
    base.engine.generate_batch(prompts, settings)  # the base model's states must not leak into the tuned engine
    reused_before = tuned.engine.prefix_cache.stats.reused_tokens
    answers = [tuned.engine.generate_batch([prompt], settings)[0].text for prompt in prompts]
    assert tuned.engine.prefix_cache.stats.reused_tokens - reused_before >= len(notice) // 8  # the notice was reused
    with torch.inference_mode():
        for prompt, answer in zip(prompts, answers, strict=True):
            reference = tuned.engine.model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False)
            assert answer == tuned.engine.tokenizer.decode(reference[0, len(prompt) :], skip_special_tokens=True)


def test_adapter_changes_the_dspy_model_name(gemma_lora):
    from smelt.lm import lm_for_spec

    base = lm_for_spec("gemma-3-270m", device="cpu", cache=False)
    tuned = lm_for_spec("gemma-3-270m", device="cpu", adapter=gemma_lora, cache=False)
    dtype = base.describe()["dtype"]
    assert base.lm.model == f"smelt/gemma-3-270m@{dtype}"  # outputs differ between dtypes: so does the name
    assert tuned.lm.model.startswith(f"smelt/gemma-3-270m@{dtype}+lora-")
    assert tuned.lm.model != base.lm.model  # DSPy keys its response cache by this name
