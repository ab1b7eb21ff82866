"""The GPU code paths, checked on a CPU: bf16 autocast over fp32 LoRA master weights, bf16 only where a GPU computes
in it natively, --qlora refused in one line without CUDA or bitsandbytes, the int8 greedy screen off on CUDA, one
sweep worker per GPU, and LoRA memory estimates read from the GPU's free memory. Where a test needs CUDA's answers
(capability, free memory, device count) it is handed them by monkeypatched torch.cuda functions; the tensors and
the training step are real."""

import subprocess
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from smelt.errors import SmeltError
from smelt.optimizers.distill.lora_config import LoraTrainingConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG = LoraTrainingConfig(r=4, alpha=8.0, dropout=0.0, epochs=2, batch_size=2, max_length=64, learning_rate=1e-2)


def tiny_llama(dtype=torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=256, max_position_embeddings=256, pad_token_id=0)
    return LlamaForCausalLM(config).to(dtype)


def examples(count: int = 4):
    from smelt.optimizers.distill.sft_data import SftExample

    generator = torch.Generator().manual_seed(0)
    return [SftExample(torch.randint(1, 256, (24,), generator=generator).tolist(),
                       torch.randint(1, 256, (8,), generator=generator).tolist()) for _ in range(count)]


TOKENIZER = SimpleNamespace(bos_token_id=None, pad_token_id=0, eos_token_id=1)


@pytest.fixture
def a_gpu(monkeypatch):
    """torch.cuda as on a machine with two GPUs of compute capability 8.0, 80 GiB each."""
    state = {"capability": (8, 0), "free": 60 * 2**30, "reserved": 6 * 2**30, "allocated": 4 * 2**30}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: state["capability"])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (state["free"], 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: state["reserved"])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state["allocated"])
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return state


# ---------------------------------------------------------------------------- bf16 autocast, fp32 master weights


def test_a_training_step_computes_in_bf16_and_updates_fp32_master_weights():
    from peft import get_peft_model

    from smelt.optimizers.distill.checkpoints import TrainingProgress
    from smelt.optimizers.distill.lora_model import peft_lora_config
    from smelt.optimizers.distill.lora_training import (
        _compute_context,
        _fp32_master_weights,
        _optimizer_step,
        _warmup_then_decay,
    )
    from smelt.optimizers.distill.sft_data import collate_sft

    model = tiny_llama(torch.bfloat16)  # a student as loaded on a GPU: bf16 weights
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    # A peft that left the adapters in the student's dtype: the loop itself must give them fp32 master weights.
    peft_model = get_peft_model(model, peft_lora_config(CONFIG), autocast_adapter_dtype=False)
    assert {p.dtype for p in peft_model.parameters() if p.requires_grad} == {torch.bfloat16}
    trainable = _fp32_master_weights(peft_model)
    assert trainable and all(p.dtype == torch.float32 for p in trainable)

    seen = []
    lora_a = next(m for name, m in peft_model.named_modules() if name.endswith("q_proj.lora_A.default"))
    lora_a.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    optimizer = torch.optim.AdamW(trainable, lr=CONFIG.learning_rate)
    scheduler = _warmup_then_decay(optimizer, CONFIG, total_steps=4)
    batch = collate_sft(examples(2), pad_id=0, max_length=64)
    progress = TrainingProgress()
    lora_b = [p for name, p in peft_model.named_parameters() if "lora_B" in name]
    assert all(float(p.detach().abs().sum()) == 0 for p in lora_b)  # LoRA starts as the identity: B = 0

    bf16 = replace(CONFIG, bf16=True)
    for _ in range(2):  # the first step only moves B off zero (warm-up); the second reaches A too
        _optimizer_step(peft_model, [batch], trainable, optimizer, scheduler, bf16,
                        _compute_context(bf16, torch.device("cpu")), torch.device("cpu"), progress)
    assert seen and set(seen) == {torch.bfloat16}  # the adapter's matrix products ran in bf16
    assert all(p.dtype == torch.float32 and p.grad is None for p in trainable)  # fp32 masters, gradients cleared
    assert all(float(p.detach().abs().sum()) > 0 for p in lora_b)  # ... and they moved
    assert all(state["exp_avg"].dtype == torch.float32 for state in optimizer.state.values())
    assert progress.step == 2 and all(loss == loss for loss in progress.losses)  # finite (NaN != NaN)
    for name, p in peft_model.get_base_model().named_parameters():  # the student's own weights: untouched, bf16
        if "lora_" not in name:
            key = name.replace(".base_layer", "")
            assert p.dtype == torch.bfloat16 and torch.equal(p.detach(), base[key]), name

    seen.clear()  # without autocast the adapter computes in its own fp32: the context is what made it bf16
    _optimizer_step(peft_model, [batch], trainable, optimizer, scheduler, CONFIG, nullcontext(), torch.device("cpu"),
                    progress)
    assert set(seen) == {torch.float32}


def test_a_bf16_student_trains_an_fp32_adapter_and_stays_as_it_was(tmp_path):
    from smelt.optimizers.distill.lora_training import train_lora

    model = tiny_llama(torch.bfloat16)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    result = train_lora(model, TOKENIZER, examples(), CONFIG, tmp_path / "run", log=lambda _: None)
    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert adapter and {t.dtype for t in adapter.values()} == {torch.float32}
    assert any(float(t.abs().sum()) > 0 for name, t in adapter.items() if "lora_B" in name)
    assert result.steps == 4 and all(loss == loss for loss in result.losses)
    after = dict(model.named_parameters())
    assert after.keys() == before.keys()  # peft's layers are gone again
    assert all(after[n].dtype == torch.bfloat16 and torch.equal(after[n].detach(), before[n]) for n in before)


def test_bf16_only_where_the_gpu_computes_in_it(a_gpu):
    from smelt.lm.devices import cuda_bf16_native, default_dtype
    from smelt.optimizers.distill.lora_training import _native_precision

    lines = []
    assert cuda_bf16_native("cuda:1") and default_dtype("cuda") == torch.bfloat16
    assert _native_precision(replace(CONFIG, bf16=True), torch.device("cuda", 0), lines.append).bf16 and not lines
    a_gpu["capability"] = (7, 5)  # a T4: torch.cuda.is_bf16_supported() says yes (emulated), slower than fp32
    assert not cuda_bf16_native("cuda") and default_dtype("cuda:0") == torch.float32
    assert not _native_precision(replace(CONFIG, bf16=True), torch.device("cuda", 0), lines.append).bf16
    assert len(lines) == 1 and "no native bf16" in lines[0] and "fp32" in lines[0]


# ---------------------------------------------------------------------------- QLoRA refused in one line


def test_qlora_is_refused_without_cuda_or_a_bitsandbytes_that_loads(a_gpu, tmp_path, monkeypatch):
    from smelt.optimizers.distill.lora_model import require_qlora

    with pytest.raises(SmeltError, match="--qlora needs a CUDA GPU .* drop --qlora"):
        require_qlora("cpu")
    with pytest.raises(SmeltError, match="--qlora needs the bitsandbytes package"):
        require_qlora("cuda")  # a GPU (a_gpu), no bitsandbytes installed here
    broken = tmp_path / "site" / "bitsandbytes"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise OSError('libcudart.so.12: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(SmeltError) as refused:
        require_qlora("cuda:0")
    assert "installed but does not load (libcudart.so.12" in str(refused.value) and "\n" not in str(refused.value)


def test_distill_qlora_on_a_cpu_is_one_error_line(tmp_path):
    """Through the real CLI, on a tiny random-weight student (bench/gpu_check_model.py)."""
    from bench.gpu_check_model import build_model

    model = build_model("tiny", tmp_path / "tiny", "cpu")["folder"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "distill", "doc_qa", "--student", f"hf:{model}", "--teacher",
         f"hf:{model}", "--qlora", "--device", "cpu", "--max-train", "2", "--max-dev", "1", "--max-test", "1",
         "--latency-sample", "0", "--no-cache", "--runs-root", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(errors) == 1 and "--qlora needs a CUDA GPU" in errors[0], result.stderr[-2000:]
    assert not list((tmp_path / "runs").rglob("adapter_model.safetensors"))


# ---------------------------------------------------------------------------- the engine's int8 screen: CPU only


def test_the_int8_greedy_screen_is_off_on_cuda_and_in_bf16(monkeypatch):
    from smelt.lm.engine import TransformersEngine, model_runner
    from smelt.lm.engine.greedy_head import GreedyHead

    assert GreedyHead.usable(torch.zeros(8, 4))
    assert not GreedyHead.usable(SimpleNamespace(dtype=torch.float32, device=torch.device("cuda", 0)))
    assert not GreedyHead.usable(torch.zeros(8, 4, dtype=torch.bfloat16))

    model = tiny_llama()
    assert isinstance(TransformersEngine(model, TOKENIZER, name="cpu-fp32").runner.screened_head(), GreedyHead)
    assert TransformersEngine(tiny_llama(torch.bfloat16), TOKENIZER, name="cpu-bf16").runner.screened_head() is None
    on_gpu = SimpleNamespace(dtype=torch.float32, device=torch.device("cuda", 0))  # the head as it lies on a GPU
    monkeypatch.setattr(model_runner, "plain_output_projection", lambda m: on_gpu)
    assert TransformersEngine(model, TOKENIZER, name="cuda-fp32").runner.screened_head() is None


# ---------------------------------------------------------------------------- sweep: one worker per GPU


def test_sweep_workers_get_one_gpu_each(a_gpu, monkeypatch):
    from smelt.commands.sweep_worker import worker_gpus

    assert worker_gpus("cuda", 2) == ["0", "1"]
    assert worker_gpus("auto", 2) == ["0", "1"]  # auto on a CUDA machine is CUDA
    assert worker_gpus("cpu", 2) == [None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")  # the GPUs this process was given, in that order
    assert worker_gpus("cuda", 2) == ["3", "5"] and worker_gpus("cuda", 1) == ["3"]
    assert worker_gpus("cuda:1", 2) == ["5", "5"]  # one named GPU, shared
    with pytest.raises(SmeltError, match=r"--workers 3 with --device cuda: 2 GPU\(s\) visible .*at most --workers 2"):
        worker_gpus("cuda", 3)
    with pytest.raises(SmeltError, match="--device cuda:2: 2 GPU"):
        worker_gpus("cuda:2", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_gpus("auto", 2) == [None, None]


def test_each_worker_process_is_started_with_its_gpu(a_gpu, monkeypatch):
    """run_worker_processes hands each spawned worker its CUDA_VISIBLE_DEVICES (the processes are recorded, not run)."""
    import multiprocessing

    from smelt.commands.sweep_options import SweepOptions
    from smelt.commands.sweep_worker import run_worker_processes

    started = []

    class Process:
        def __init__(self, target, args, name):
            self.name, self.exitcode = name, 0
            started.append(args[-1])  # the environment the worker sets before it imports torch

        def start(self):
            pass

        def join(self, timeout=None):
            pass

    monkeypatch.setattr(multiprocessing, "get_context", lambda method: SimpleNamespace(Process=Process))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    lines = []
    run_worker_processes(SweepOptions(task="doc_qa", workers=2, device="auto"), Path("."), "s", lines.append)
    assert started == [{"CUDA_VISIBLE_DEVICES": "2"}, {"CUDA_VISIBLE_DEVICES": "7"}]
    assert lines == ["[smelt] worker 0: GPU 2", "[smelt] worker 1: GPU 7"]
    started.clear()
    run_worker_processes(SweepOptions(task="doc_qa", workers=2, device="cpu"), Path("."), "s", lines.append)
    assert started == [{}, {}]


# ---------------------------------------------------------------------------- memory: the GPU's free memory


def test_lora_memory_estimate_reads_the_gpus_free_memory(a_gpu):
    from smelt.optimizers.distill.lora_resources import available_memory, check_fits, estimate_resources

    assert available_memory("cuda:0") == (60 + 6 - 4) * 2**30  # free, plus torch's cached blocks not in use
    model = tiny_llama()  # on the CPU here: none of its weights count as already on the GPU
    gpu = replace(CONFIG, bf16=True, batch_size=64, max_length=4096)
    estimate = estimate_resources(model, gpu, "cuda:0")
    assert estimate.available_bytes == available_memory("cuda:0") and estimate.resident_bytes == 0
    assert estimate.activation_bytes < estimate_resources(model, replace(gpu, bf16=False), "cuda:0").activation_bytes
    check_fits(estimate)  # fits in 62 GiB

    a_gpu.update(free=estimate.needed_bytes // 2, reserved=0, allocated=0)
    short = estimate_resources(model, gpu, "cuda:0")
    with pytest.raises(SmeltError) as refused:
        check_fits(short)
    message = str(refused.value)
    assert "more on cuda:0" in message and "--batch-size (64)" in message and "--qlora" in message
    assert f"only {short.available_bytes / 2**30:.1f} GiB is free" in message
