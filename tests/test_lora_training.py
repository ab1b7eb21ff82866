"""LoRA distillation on the real embedded model (CPU): data, training, checkpoints, resume, sizing, merging."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from smelt.errors import SmeltError
from smelt.lm.loading import attach_adapter
from smelt.lm.prefill_adapter import COMPLETED_MARKER
from smelt.lm.rendering import encode_prompt
from smelt.lm.specs import parse_spec
from smelt.optimizers.distill import lora_training
from smelt.optimizers.distill.lora_config import LoraTrainingConfig, default_config
from smelt.optimizers.distill.lora_model import load_for_training, merge_adapter
from smelt.optimizers.distill.lora_training import check_fits, estimate_resources, train_lora
from smelt.optimizers.distill.sft_data import (
    IGNORE_INDEX,
    SftExample,
    collate_sft,
    fit_examples,
    read_sft_jsonl,
    tokenize_sft,
    write_sft_jsonl,
)

PAIRS = [
    ("What colour is a clear daytime sky?", "blue"),
    ("富士山の標高は何メートルですか。", "3776メートル"),
    ("What is the capital of France?", "Paris"),
    ("Which is colder, ice or steam?", "ice"),
]
# Small and quick: one optimizer step per epoch over the four short examples.
TINY = LoraTrainingConfig(r=4, alpha=8.0, epochs=2, batch_size=4, max_length=64, learning_rate=3e-3, warmup_ratio=0.0)


def _messages(question: str) -> list[dict]:
    return [
        {"role": "system", "content": "Answer the question in a few words."},
        {"role": "user", "content": f"[[ ## question ## ]]\n{question}"},
        {"role": "assistant", "content": "[[ ## answer ## ]]\n"},
    ]


def _rows() -> list[dict]:
    return [{"messages": _messages(q), "completion": f"{a}\n\n{COMPLETED_MARKER}"} for q, a in PAIRS]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These sequences are tiny: one thread trains them as fast as two, and a busy machine cannot stall it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def student(embedded_model):
    """The embedded model as distill trains it: fp32 weights on a CPU, whatever dtype inference uses."""
    loaded = load_for_training(parse_spec("gemma-3-270m"), TINY, device="cpu")
    assert next(loaded.model.parameters()).dtype == torch.float32
    return loaded


def test_training_never_changes_the_served_model(embedded_model, student):
    """The student is a private copy: LoRA layers peft adds to it in place never reach the model being served."""
    from peft import LoraConfig, get_peft_model

    from smelt.lm.loading import load_model, peft_quietly

    served = load_model(parse_spec("gemma-3-270m"), device="cpu", dtype=torch.float32)
    # The shared copy (an in-process distill earlier in the session may have unloaded the fixture's and loaded anew).
    assert load_model(parse_spec("gemma-3-270m"), device="cpu", dtype=torch.float32) is served
    assert student.model is not served.model
    prompt = torch.tensor([served.tokenizer("The capital of France is")["input_ids"]])

    def greedy() -> list[int]:
        with torch.inference_mode():
            return served.model.generate(prompt, max_new_tokens=8, do_sample=False,
                                         pad_token_id=served.tokenizer.pad_token_id)[0].tolist()

    before = greedy()
    # init_lora_weights=False: random A and B, so the adapted student really computes something else.
    with peft_quietly():
        peft_model = get_peft_model(student.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                              init_lora_weights=False))
    try:
        assert any(".lora_" in name for name, _ in student.model.named_parameters())
        assert not any("lora" in name.lower() for name, _ in served.model.named_modules())
        assert greedy() == before
        with torch.inference_mode():
            assert not torch.allclose(peft_model(prompt).logits, served.model(prompt).logits)
    finally:
        peft_model.unload()  # the other tests train the bare student


@pytest.fixture(scope="module")
def examples(student) -> list[SftExample]:
    return [tokenize_sft(student.tokenizer, row["messages"], row["completion"]) for row in _rows()]


def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_prompt_ids_are_exactly_the_engines(student, examples):
    tokenizer = student.tokenizer
    for row, example in zip(_rows(), examples, strict=True):
        assert example.prompt_ids == encode_prompt(tokenizer, row["messages"])
        assert example.completion_ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(example.completion_ids[:-1]) == row["completion"]


def test_labels_cover_the_completion_only(examples):
    batch = collate_sft(examples[:3], pad_id=0, max_length=64)
    for row, example in enumerate(examples[:3]):
        n_prompt, n = len(example.prompt_ids), len(example)
        labels, ids, mask = batch["labels"][row], batch["input_ids"][row], batch["attention_mask"][row]
        assert (labels[:n_prompt] == IGNORE_INDEX).all()  # prompt
        assert torch.equal(labels[n_prompt:n], ids[n_prompt:n])  # completion
        assert (labels[n:] == IGNORE_INDEX).all() and (mask[n:] == 0).all()  # right padding
        assert mask[:n].all()


def test_truncation_cuts_the_prompt_from_the_left_and_drops_long_completions():
    long_prompt = SftExample([2, *range(10, 40)], [7, 8, 1])
    too_long = SftExample([2, 5], list(range(100, 140)))
    kept, dropped = fit_examples([long_prompt, too_long], max_length=12, keep_first=2)
    assert dropped == 1 and len(kept) == 1
    assert kept[0].completion_ids == [7, 8, 1] and len(kept[0]) == 12
    assert kept[0].prompt_ids == [2, *range(32, 40)]  # BOS kept, then the prompt's tail
    batch = collate_sft(kept, pad_id=0, max_length=12, keep_first=2)
    assert batch["input_ids"].shape == (1, 12)


def test_sft_jsonl_round_trip_and_line_errors(tmp_path):
    rows = [{"id": f"q{i}", "source": "teacher", **row} for i, row in enumerate(_rows())]  # extra keys are kept
    path = write_sft_jsonl(tmp_path / "sft.jsonl", rows)
    assert read_sft_jsonl(path) == rows
    bad = tmp_path / "bad.jsonl"
    wrong_role = {"messages": [{"role": "bot", "content": "x"}], "completion": ""}
    bad.write_text(json.dumps(_rows()[0]) + "\n" + json.dumps(wrong_role) + "\n")
    with pytest.raises(SmeltError, match=r"bad\.jsonl:2: messages\[0\] needs a \"role\""):
        read_sft_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(SmeltError, match=r"bad\.jsonl:1: not valid JSON"):
        read_sft_jsonl(bad)


def test_config_errors_name_the_option():
    with pytest.raises(SmeltError, match="--lora-r must be a positive integer"):
        LoraTrainingConfig(r=0)
    with pytest.raises(SmeltError, match="--lora-dropout"):
        LoraTrainingConfig(dropout=1.5)
    with pytest.raises(SmeltError, match="--target-modules"):
        LoraTrainingConfig(target_modules="")
    assert LoraTrainingConfig(target_modules="q_proj, v_proj").target_modules == ("q_proj", "v_proj")
    assert LoraTrainingConfig(target_modules="ALL-LINEAR").all_linear
    assert default_config("cpu").bf16 is False


@pytest.fixture(scope="module")
def trained(student, examples, tmp_path_factory):
    """Six optimizer steps on the four examples: the run the loss, logits and merge tests look at."""
    out = tmp_path_factory.mktemp("lora") / "run"
    model, tokenizer = student.model, student.tokenizer
    return train_lora(model, tokenizer, examples, replace(TINY, epochs=6), out, log=lambda _: None)


def test_gpu_only_options_are_refused_on_cpu(student, examples, tmp_path):
    with pytest.raises(SmeltError, match="--qlora needs a CUDA GPU"):
        load_for_training(parse_spec("gemma-3-270m"), replace(TINY, qlora=True), device="cpu")
    with pytest.raises(SmeltError, match="--qlora needs a CUDA GPU"):
        train_lora(student.model, student.tokenizer, examples, replace(TINY, qlora=True), tmp_path / "q")
    with pytest.raises(SmeltError, match="--bf16 needs a CUDA GPU"):
        train_lora(student.model, student.tokenizer, examples, replace(TINY, bf16=True), tmp_path / "b")
    assert not (tmp_path / "q").exists() and not (tmp_path / "b").exists()


def test_training_lowers_the_loss_and_the_adapter_changes_the_model(student, examples, trained):
    model = student.model
    assert trained.steps == 6 and len(trained.losses) == 6
    assert trained.losses[-1] < 0.5 * trained.losses[0], trained.losses
    assert (trained.adapter_dir / "adapter_model.safetensors").is_file()
    log_lines = [json.loads(line) for line in trained.log_path.read_text().splitlines()]
    assert [line["step"] for line in log_lines] == list(range(1, 7))
    assert set(log_lines[0]) == {"step", "epoch", "loss", "lr", "tokens", "seconds"}
    assert trained.tokens == sum(len(e) for e in examples) * 6 and trained.tokens_per_second > 0

    ids = torch.tensor([examples[0].prompt_ids])
    with torch.no_grad():
        base_logits = model(input_ids=ids).logits
    peft_model = attach_adapter(model, trained.adapter_dir, base_source=student.source)
    try:
        with torch.no_grad():
            tuned_logits = peft_model(input_ids=ids).logits
    finally:
        peft_model.unload()  # give the shared model back without its adapter
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-3)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base_logits)  # the base model is as it was


def test_same_seed_same_adapter_and_resume_after_an_interruption(student, examples, tmp_path, monkeypatch):
    model, tokenizer = student.model, student.tokenizer
    quiet = {"log": lambda _: None}
    whole = train_lora(model, tokenizer, examples, TINY, tmp_path / "whole", **quiet)
    again = train_lora(model, tokenizer, examples, TINY, tmp_path / "again", **quiet)
    assert _same(_adapter(whole.adapter_dir), _adapter(again.adapter_dir))  # bit for bit
    assert whole.losses == again.losses

    save = lora_training.save_checkpoint

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt  # the run is stopped right after the epoch-1 checkpoint

    monkeypatch.setattr(lora_training, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_lora(model, tokenizer, examples, TINY, tmp_path / "cut", **quiet)
    monkeypatch.setattr(lora_training, "save_checkpoint", save)
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["epoch-1"]
    with pytest.raises(SmeltError, match="--resume"):
        train_lora(model, tokenizer, examples, TINY, tmp_path / "cut", **quiet)
    with pytest.raises(SmeltError, match="r: 4 -> 8"):
        train_lora(model, tokenizer, examples, replace(TINY, r=8), tmp_path / "cut", resume=True, **quiet)

    resumed = train_lora(model, tokenizer, examples, TINY, tmp_path / "cut", resume=True, **quiet)
    assert _same(_adapter(resumed.adapter_dir), _adapter(whole.adapter_dir))
    assert resumed.losses == whole.losses and resumed.steps == whole.steps == 2
    assert len(resumed.log_path.read_text().splitlines()) == whole.steps


def test_estimate_matches_peft_and_refuses_what_cannot_fit(student):
    from peft import get_peft_model

    from smelt.lm.loading import peft_quietly
    from smelt.optimizers.distill.lora_model import peft_lora_config

    model = student.model
    for config in (TINY, replace(TINY, target_modules="all-linear", r=16)):
        estimate = estimate_resources(model, config, "cpu")
        with peft_quietly():
            peft_model = get_peft_model(model, peft_lora_config(config))
        try:
            trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        finally:
            peft_model.unload()
        assert estimate.trainable_params == trainable
        assert 0 < estimate.trainable_params < estimate.total_params == sum(p.numel() for p in model.parameters())
        assert estimate.weight_bytes == 4 * estimate.total_params  # fp32 on CPU
        assert estimate.available_bytes and estimate.available_bytes > 0
        check_fits(estimate)
    absurd = estimate_resources(model, replace(TINY, batch_size=4096, max_length=32768), "cpu")
    with pytest.raises(SmeltError, match="--batch-size.*--max-length"):
        check_fits(absurd)


def test_merged_model_matches_the_adapter(student, examples, trained, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = student.model, student.tokenizer
    merged_dir = merge_adapter(model, trained.adapter_dir, tmp_path / "merged", tokenizer=tokenizer)
    assert (merged_dir / "model.safetensors").is_file() and (merged_dir / "tokenizer.json").is_file()

    ids = torch.tensor([examples[1].prompt_ids])
    peft_model = attach_adapter(model, trained.adapter_dir, base_source=student.source)
    try:
        with torch.no_grad():
            expected = peft_model(input_ids=ids).logits
        # Merging from the student with the adapter attached gives the same weights and leaves it attached.
        again = merge_adapter(peft_model, trained.adapter_dir, tmp_path / "again", tokenizer=tokenizer)
        with torch.no_grad():
            assert torch.equal(peft_model(input_ids=ids).logits, expected)
    finally:
        peft_model.unload()
    assert _same(load_file(str(again / "model.safetensors")), load_file(str(merged_dir / "model.safetensors")))
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-3)
    with pytest.raises(SmeltError, match="already exists"):
        merge_adapter(model, trained.adapter_dir, merged_dir, tokenizer=tokenizer)


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(config).eval()


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")))


@pytest.mark.parametrize("variant", [
    {},
    {"use_dora": True},
    {"use_rslora": True, "rank_pattern": {"q_proj": 2}, "alpha_pattern": {"v_proj": 3.0}},
    {"target_modules": "all-linear"},
], ids=["lora", "dora", "rslora-patterns", "all-linear"])
def test_merge_gives_the_adapters_logits_on_a_tiny_model(variant, tmp_path):
    """peft merges: the merged folder answers as base + adapter does, and the base model is left as it was."""
    import copy

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from smelt.lm.loading import peft_quietly

    base, tokenizer = _tiny_llama(), _tiny_tokenizer()
    settings = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "init_lora_weights": False} | variant
    with peft_quietly():
        get_peft_model(copy.deepcopy(base), LoraConfig(**settings)).save_pretrained(tmp_path / "adapter")
    weights = {key: tensor.clone() for key, tensor in base.state_dict().items()}
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))

    merged_dir = merge_adapter(base, tmp_path / "adapter", tmp_path / "merged", tokenizer=tokenizer)
    assert _same(base.state_dict(), weights)
    peft_model = attach_adapter(base, tmp_path / "adapter", base_source="tiny")
    try:
        with torch.no_grad():
            expected = peft_model(input_ids=ids).logits
        # distill --merge passes the served model's base model, which has this adapter's layers in it.
        again = merge_adapter(peft_model.get_base_model(), tmp_path / "adapter", tmp_path / "again",
                              tokenizer=tokenizer)
        with torch.no_grad():
            assert torch.equal(peft_model(input_ids=ids).logits, expected)
    finally:
        peft_model.unload()
    assert _same(load_file(str(again / "model.safetensors")), load_file(str(merged_dir / "model.safetensors")))
    merged = LlamaForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    with torch.no_grad():
        assert (merged(input_ids=ids).logits - expected).abs().max() <= 1e-5


def test_merge_refusals(tmp_path):
    import copy

    from peft import IA3Config, LoraConfig, get_peft_model

    from smelt.lm.loading import peft_quietly

    base, tokenizer = _tiny_llama(), _tiny_tokenizer()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SmeltError, match="no adapter_config.json there"):
        merge_adapter(base, tmp_path / "empty", tmp_path / "merged", tokenizer=tokenizer)
    with peft_quietly():
        ia3 = IA3Config(target_modules=["v_proj"], feedforward_modules=[])
        get_peft_model(copy.deepcopy(base), ia3).save_pretrained(tmp_path / "ia3")
        lora = LoraConfig(r=2, target_modules=["q_proj"])
        get_peft_model(copy.deepcopy(base), lora).save_pretrained(tmp_path / "lora")
    with pytest.raises(SmeltError, match="only LoRA adapters can be merged"):
        merge_adapter(base, tmp_path / "ia3", tmp_path / "merged", tokenizer=tokenizer)
    base.is_loaded_in_4bit = True
    with pytest.raises(SmeltError, match="needs the full-precision student"):
        merge_adapter(base, tmp_path / "lora", tmp_path / "merged", tokenizer=tokenizer)
    assert not (tmp_path / "merged").exists()
