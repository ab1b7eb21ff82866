"""One engine per loaded model, shared by every lm_for_spec on it; prompts too long for the model's context."""

import json
import threading

import dspy
import pytest

from smelt.lm import lm_for_spec, loading
from smelt.lm.engine import PromptTooLong, context_length
from smelt.lm.generation import GenerationSettings
from smelt.lm.rendering import encode_prompt


@pytest.fixture
def forget_new_models():
    """Drop (and close) what a test loads beyond the session's models, so the next tests do not carry it."""
    before = set(loading._loaded)
    yield
    with loading._load_lock:
        added = [key for key in loading._loaded if key not in before]
        dropped = [loading._loaded.pop(key) for key in added]
    for loaded in dropped:
        loaded.close_engine()


def run_together(*calls):
    """Start every call at the same moment on its own thread; return their results (or exceptions) in order."""
    results: list = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i, call):
        start.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a request never came back"
    return results


def test_two_lms_on_one_model_share_its_engine_and_batches(embedded_lm, monkeypatch):
    judge = lm_for_spec("gemma-3-270m", device="cpu", cache=False, instructions=False, max_batch_size=4)
    engine = embedded_lm.engine
    assert judge.engine is engine  # one worker thread runs the module, whoever asks
    assert judge.lm is not embedded_lm.lm and judge.adapter is not embedded_lm.adapter
    assert engine.max_batch_size == 16  # the largest asked for
    monkeypatch.setattr(engine, "gather_seconds", 0.5)  # a busy machine: give both threads time to join
    before = len(engine.batch_sizes)
    first, second = run_together(lambda: embedded_lm.lm("The capital of France is", max_tokens=4)[0],
                                 lambda: judge.lm("1, 2, 3, 4,", max_tokens=4)[0])
    assert isinstance(first, str) and isinstance(second, str)
    assert engine.batch_sizes[before:] == [2]  # both LMs' requests ran as one batch


def test_a_closed_shared_engine_serves_the_next_request(embedded_lm):
    other = lm_for_spec("gemma-3-270m", device="cpu", cache=False)
    assert other.engine is embedded_lm.engine
    for _ in range(10):  # close right before a request: the worker stops, the request starts a new one
        embedded_lm.engine.close()
        [result] = run_together(lambda: other.lm("1, 2, 3,", max_tokens=1)[0])
        assert isinstance(result, str)
    assert embedded_lm.engine.batch_sizes == [1]  # close() starts the record afresh


def test_another_dtype_or_an_adapter_gets_its_own_engine(embedded_lm, tmp_path, monkeypatch, forget_new_models):
    monkeypatch.setenv("SMELT_CPU_DTYPE", "bfloat16")
    bf16 = lm_for_spec("gemma-3-270m", device="cpu", cache=False)
    assert bf16.engine is not embedded_lm.engine and bf16.engine.dtype == "bfloat16"
    assert lm_for_spec("gemma-3-270m", device="cpu", cache=False).engine is bf16.engine
    monkeypatch.delenv("SMELT_CPU_DTYPE")

    folder = zero_lora(tmp_path / "lora", embedded_lm.engine.model)
    tuned = lm_for_spec("gemma-3-270m", device="cpu", adapter=folder, cache=False)
    assert tuned.engine is not embedded_lm.engine and tuned.engine.model is not embedded_lm.engine.model
    assert lm_for_spec("gemma-3-270m", device="cpu", adapter=folder, cache=False).engine is tuned.engine


def zero_lora(folder, model, r=2):
    """A peft LoRA folder for q_proj in every layer of ``model``, written without wrapping (or copying) it."""
    import torch
    from safetensors.torch import save_file

    weights = {}
    for name, module in model.named_modules():
        if name.endswith("q_proj"):
            weights[f"base_model.model.{name}.lora_A.weight"] = torch.zeros(r, module.in_features)
            weights[f"base_model.model.{name}.lora_B.weight"] = torch.zeros(module.out_features, r)
    folder.mkdir()
    save_file(weights, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 2 * r,
              "target_modules": ["q_proj"], "base_model_name_or_path": "gemma-3-270m"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_unload_models_closes_the_engines_it_drops(embedded_model, monkeypatch):
    fake = loading.LoadedModel(embedded_model.model, embedded_model.tokenizer, embedded_model.spec, "cpu",
                               embedded_model.source, dtype=embedded_model.dtype)
    engine = fake.engine(name="unload-test")
    lm = dspy.LM("smelt/unload-test", engine=engine, cache=False)
    assert lm("1, 2,", max_tokens=1)[0] is not None
    worker = engine._worker
    assert worker.is_alive()
    monkeypatch.setattr(loading, "_loaded", {("unload-test",): fake})
    loading.unload_models()
    worker.join(timeout=30)
    assert not worker.is_alive() and loading._loaded == {}
    assert lm("1, 2,", max_tokens=1)[0] is not None  # an LM still held keeps working


# --- prompts longer than the context ------------------------------------------------------------------------------
LONG = "Here is a long list of fruits: " + ", ".join(["apple", "banana", "cherry", "damson"] * 12)
SHORT = "1, 2, 3,"


def test_context_length_comes_from_the_config_or_a_smaller_tokenizer_limit(embedded_lm):
    from types import SimpleNamespace

    model = embedded_lm.engine.model
    assert context_length(model, SimpleNamespace(model_max_length=int(1e30))) == 32768  # Gemma 3 270M
    assert embedded_lm.engine.context_length == 32768
    assert context_length(model, SimpleNamespace(model_max_length=2048)) == 2048
    assert context_length(SimpleNamespace(config=SimpleNamespace()), SimpleNamespace()) is None


def test_a_prompt_too_long_for_the_context_fails_alone(embedded_lm, monkeypatch):
    engine, lm = embedded_lm.engine, embedded_lm.lm
    long_ids = encode_prompt(engine.tokenizer, [{"role": "user", "content": LONG}])
    short_ids = encode_prompt(engine.tokenizer, [{"role": "user", "content": SHORT}])
    limit = len(long_ids) + 4 - 1  # one token too many for the long prompt with 4 new tokens
    assert len(short_ids) + 4 <= limit
    monkeypatch.setattr(engine, "context_length", limit)
    monkeypatch.setattr(engine, "gather_seconds", 0.5)
    before = len(engine.batch_sizes)
    refused, answered = run_together(lambda: lm(LONG, max_tokens=4), lambda: lm(SHORT, max_tokens=4))
    assert isinstance(answered, list) and isinstance(answered[0], str)
    assert engine.batch_sizes[before:] == [1]  # the long prompt never reached the model; DSPy did not retry it
    line = (f"prompt of {len(long_ids):,} tokens + 4 new tokens exceeds gemma-3-270m@{engine.dtype}'s context of "
            f"{limit:,} tokens; shorten the inputs, or use a model with a longer context")
    assert isinstance(refused, dspy.utils.exceptions.ContextWindowExceededError)
    assert str(refused) == f"[{lm.model}] {line}"

    with pytest.raises(PromptTooLong) as caught:  # the engine's own exception: a ValueError with that one line
        engine.check_fits(len(long_ids), 4)
    assert isinstance(caught.value, ValueError) and str(caught.value) == line


def test_a_too_long_prompt_through_a_program_is_not_asked_again(embedded_lm, monkeypatch):
    engine = embedded_lm.engine
    monkeypatch.setattr(engine, "context_length", 40)
    before = len(engine.batch_sizes)
    with embedded_lm.context(), pytest.raises(dspy.utils.exceptions.ContextWindowExceededError, match="context of 40"):
        dspy.Predict("question -> answer")(question="What is the capital of France?")
    assert engine.batch_sizes[before:] == []  # no JSON-adapter fallback, no retry
    [generation] = engine.generate_batch([engine.tokenizer(SHORT)["input_ids"]], GenerationSettings(max_new_tokens=2))
    assert generation.completion_tokens == 2  # the engine itself is fine
