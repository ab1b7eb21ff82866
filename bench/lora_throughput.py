"""LoRA training throughput: smelt's loop against a plain transformers.Trainer + peft, in the same run.

Both train the same LoRA (same config, batch size, max length, steps, seed) on the same data: the
shipped doc_qa train questions, formatted exactly as distillation formats them (the student's lean
prompt, gold answer + completion marker), fp32 on CPU. Tokens are prompt + completion tokens,
padding excluded, over the whole train call (setup included), so the two numbers compare directly.
On a busy machine torch's OpenMP threads stall one another; --threads 1 and --repeats 2 steady the numbers.

    python -m bench.lora_throughput [--steps 4] [--repeats 2] [--threads 1]   # from the repository root

--gpu-mfu instead trains LoRA on a Llama-3.2-3B-shaped model with random weights (built from its
config, nothing downloaded; or --model FOLDER, a random-weight folder such as bench/gpu_check.sh builds) on a
CUDA GPU and reports tokens/s and model FLOPs utilisation: 6 * N * tokens/s over the GPU's peak dense bf16
FLOP/s (N = all parameters). --compare-trainer also trains the same LoRA with transformers.Trainer + peft on
the same model and data; --json FILE writes the numbers. It exits 2 without CUDA, unless --device cpu (a tiny
--model, for bench/gpu_check.sh's SMALL=1 mode: no MFU there).
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

from bench.machine import cpu_name

# Peak dense bf16 tensor FLOP/s by device name (most specific first).
PEAK_BF16 = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
]




class PeakMemory:
    """Peak memory during a block: CUDA allocator peak, or the process's resident set sampled every 20 ms."""

    def __init__(self, device: str):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self):
        import psutil
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        process = psutil.Process()
        self.peak = process.memory_info().rss

        def sample():
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


def doc_qa_examples(tokenizer, count: int):
    """The shipped doc_qa train questions as distillation examples (teacher = the gold answer)."""
    from smelt.optimizers.distill.sft_data import tokenize_sft
    from smelt.optimizers.distill.sft_examples import sft_completion, sft_messages
    from smelt.programs.registry import get_task

    task = get_task("doc_qa")
    program = task.program()
    train = task.shipped_data().train
    examples = []
    for i in range(count):  # spread over the split, so both languages are in
        example = train[(i * len(train)) // count if count <= len(train) else i % len(train)]
        inputs = dict(task.as_demo(program, example).inputs())
        completion = sft_completion(program.predictors()[0].signature, {"answer": example.answer})
        examples.append(tokenize_sft(tokenizer, sft_messages(program, inputs), completion))
    return examples


def run_ours(model, tokenizer, examples, config, workdir: Path) -> dict:
    from smelt.optimizers.distill.lora_training import train_lora

    device = str(next(model.parameters()).device)
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        result = train_lora(model, tokenizer, examples, config, workdir / "ours", log=lambda _: None)
        seconds = time.perf_counter() - started
    return {"tokens": result.tokens, "seconds": seconds, "peak": memory.peak, "loss": result.losses[-1]}


def run_trainer(model, tokenizer, examples, config, workdir: Path, steps: int) -> dict:
    """The anchor: transformers.Trainer over a peft model, same data, collation and optimizer settings."""
    import torch
    from peft import get_peft_model
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from smelt.optimizers.distill.lora_model import peft_lora_config
    from smelt.optimizers.distill.sft_data import collate_sft

    seen = {"tokens": 0}

    def collate(batch):
        out = collate_sft(batch, pad_id=tokenizer.pad_token_id, max_length=config.max_length)
        seen["tokens"] += int(out["attention_mask"].sum())
        return out

    device = str(next(model.parameters()).device)
    args = TrainingArguments(
        output_dir=str(workdir / "trainer"),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_steps=steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=int(config.warmup_ratio * steps),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not device.startswith("cuda"),
        bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing,  # as our loop, so both trade the same compute
        gradient_checkpointing_kwargs={"use_reentrant": False},
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    torch.manual_seed(config.seed)
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        peft_model = get_peft_model(model, peft_lora_config(config))
        try:
            trainer = Trainer(model=peft_model, args=args, train_dataset=examples, data_collator=collate)
            trainer.remove_callback(PrinterCallback)  # keep the output to the comparison
            output = trainer.train()
        finally:
            peft_model.unload()
        seconds = time.perf_counter() - started
    return {"tokens": seen["tokens"], "seconds": seconds, "peak": memory.peak, "loss": output.training_loss}


def cpu_benchmark(args) -> None:
    import torch

    from smelt.lm.loading import load_model
    from smelt.lm.specs import parse_spec
    from smelt.optimizers.distill.lora_config import default_config

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(parse_spec("gemma-3-270m"), device="cpu", dtype=torch.float32)  # as distill trains
    model, tokenizer = loaded.model, loaded.tokenizer
    config = replace(
        default_config("cpu"), epochs=1, batch_size=args.batch_size, max_length=args.max_length, r=args.lora_r
    )
    examples = doc_qa_examples(tokenizer, args.steps * args.batch_size)  # one epoch = args.steps steps
    lengths = sorted(len(e) for e in examples)
    print(f"device: {cpu_name()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}), fp32")
    print(
        f"model: gemma-3-270m, LoRA r={config.r} on {','.join(config.target_modules)}; "
        f"{len(examples)} doc_qa examples ({lengths[0]}-{lengths[-1]} tokens), "
        f"batch {config.batch_size}, max length {config.max_length}, {args.steps} steps"
    )
    print(f"torch {torch.__version__}, transformers {version('transformers')}, peft {version('peft')}")
    results: dict[str, list[dict]] = {"smelt": [], "trainer": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # alternate the two loops, so load from elsewhere hits both alike
            for name in args.order.split(","):
                workdir = Path(tmp) / f"{name}-{repeat}"
                if name == "smelt":
                    r = run_ours(model, tokenizer, examples, config, workdir)
                else:
                    r = run_trainer(model, tokenizer, examples, config, workdir, args.steps)
                results[name].append(r)
                print(
                    f"{name:>8}: {r['tokens'] / r['seconds']:7.1f} tokens/s  "
                    f"({r['tokens']} tokens in {r['seconds']:.1f} s, peak RSS {r['peak'] / 2**30:.2f} GiB, "
                    f"last loss {r['loss']:.3f})",
                    flush=True,
                )
    best = {name: max(r["tokens"] / r["seconds"] for r in runs) for name, runs in results.items()}
    ratio = best["smelt"] / best["trainer"]
    print(
        f"ratio smelt / Trainer: {ratio:.2f}x tokens/s (best of {args.repeats}: "
        f"{best['smelt']:.1f} vs {best['trainer']:.1f}; target >= 1.0)"
    )
    print(json.dumps({"ratio": round(ratio, 3), "best_tokens_per_s": best, "runs": results}))


def llama_3b_shape():
    """Llama-3.2-3B's config (random weights are built from it; nothing is downloaded)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=3072,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=128256,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        bos_token_id=128000,
        eos_token_id=128001,
        pad_token_id=128001,
    )


def random_model(args):
    """The model to train: --model's folder, else Llama-3.2-3B's shape built in memory; bf16 on CUDA, fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(args.device)
        return model, f"{Path(args.model).name} (random weights)"
    torch.manual_seed(0)
    with torch.device(args.device):
        model = LlamaForCausalLM(llama_3b_shape()).to(dtype)
    return model, "Llama-3.2-3B shape, random weights"


def random_examples(vocabulary: int, count: int, length: int):
    """``count`` examples of ``length`` random tokens, the last quarter the completion."""
    import torch

    from smelt.optimizers.distill.sft_data import SftExample

    generator = torch.Generator().manual_seed(0)
    completion = length // 4
    return [SftExample(torch.randint(0, vocabulary, (length - completion,), generator=generator).tolist(),
                       torch.randint(0, vocabulary, (completion,), generator=generator).tolist())
            for _ in range(count)]


# Long on purpose: one measurement, set-up to printed result, read top to bottom.
def gpu_mfu(args) -> int:
    import torch

    from smelt.optimizers.distill.lora_config import default_config
    from smelt.optimizers.distill.lora_training import train_lora

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--gpu-mfu needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is False); "
              "--device cpu with a tiny --model runs the same steps on a CPU")
        return 2
    on_gpu = args.device.startswith("cuda")
    name = torch.cuda.get_device_name() if on_gpu else cpu_name()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else next((p for k, p in PEAK_BF16 if k in name), None)
    peak = peak if on_gpu else None
    model, described = random_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    text = model.config.get_text_config()
    tokenizer = SimpleNamespace(bos_token_id=None, pad_token_id=text.pad_token_id or 0, eos_token_id=text.eos_token_id)
    config = replace(
        default_config(args.device),
        epochs=1,
        batch_size=args.batch_size,
        max_length=args.max_length,
        r=args.lora_r,
        gradient_checkpointing=not args.no_checkpointing,
    )
    examples = random_examples(min(text.vocab_size, 128000), args.steps * args.batch_size, args.max_length)
    print(f"device: {name}; {described}, {'bf16' if on_gpu else 'fp32'} weights, {n_params / 1e9:.2f}B params")
    print(
        f"LoRA r={config.r} on {','.join(config.target_modules)}, batch {config.batch_size} x {args.max_length} "
        f"tokens, {args.steps} steps, {'bf16 autocast' if config.bf16 else 'fp32'}, gradient checkpointing "
        f"{config.gradient_checkpointing}"
    )
    with tempfile.TemporaryDirectory() as tmp, PeakMemory(args.device) as memory:
        started = time.perf_counter()
        result = train_lora(model, tokenizer, examples, config, Path(tmp) / "run", log=print)
        seconds = time.perf_counter() - started
        records = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    first = records[0]  # the first step warms up kernels and the allocator: leave it out
    tokens_per_second = (records[-1]["tokens"] - first["tokens"]) / (records[-1]["seconds"] - first["seconds"])
    print(f"tokens/s: {tokens_per_second:,.0f} (steps 2-{len(records)}); peak memory {memory.peak / 2**30:.1f} GiB")
    report = {"device": args.device, "device_name": name, "model": described, "parameters": n_params,
              "lora_r": config.r, "batch_size": config.batch_size, "max_length": args.max_length,
              "steps": args.steps, "bf16": config.bf16, "gradient_checkpointing": config.gradient_checkpointing,
              "smelt": {"tokens": result.tokens, "seconds": round(seconds, 3),
                        "tokens_per_s": round(result.tokens / seconds, 1),
                        "steady_tokens_per_s": round(tokens_per_second, 1), "peak_mib": memory.peak // 2**20,
                        "loss": round(result.losses[-1], 4)},
              "trainer": None, "ratio_smelt_over_trainer": None, "mfu": None, "peak_tflops": peak and peak / 1e12}
    if peak is None:
        print(f"MFU: no peak bf16 FLOP/s known for {name!r}" + ("; pass --peak-tflops" if on_gpu else " (a CPU)"))
    else:
        mfu = 6 * n_params * tokens_per_second / peak
        report["mfu"] = round(mfu, 4)
        print(f"MFU: {100 * mfu:.1f}% (6 * N * tokens/s over {peak / 1e12:.0f} TFLOP/s peak bf16; target >= 35%)")
        print(
            f"     LoRA freezes the base, so the hardware does ~4N per token (+2N recomputed with checkpointing): "
            f"{100 * mfu * (6 if config.gradient_checkpointing else 4) / 6:.1f}% of peak by that count"
        )
    if args.compare_trainer:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = run_trainer(model, tokenizer, examples, config, Path(tmp), args.steps)
        ratio = (result.tokens / seconds) / (trainer["tokens"] / trainer["seconds"])
        report["trainer"] = {"tokens": trainer["tokens"], "seconds": round(trainer["seconds"], 3),
                             "tokens_per_s": round(trainer["tokens"] / trainer["seconds"], 1),
                             "peak_mib": trainer["peak"] // 2**20, "loss": round(trainer["loss"], 4)}
        report["ratio_smelt_over_trainer"] = round(ratio, 3)
        print(f"smelt {result.tokens / seconds:,.0f} vs Trainer + peft {trainer['tokens'] / trainer['seconds']:,.0f} "
              f"tokens/s, whole calls (set-up included): ratio {ratio:.2f}x; peak memory "
              f"{memory.peak / 2**30:.1f} vs {trainer['peak'] / 2**30:.1f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=None, help="default 4 on CPU, 4 with --gpu-mfu")
    parser.add_argument("--max-length", type=int, default=None, help="default 1024 on CPU, 2048 with --gpu-mfu")
    parser.add_argument("--lora-r", type=int, default=None, help="default 8 on CPU, 16 with --gpu-mfu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--order", default="smelt,trainer", help="which loop runs first (smelt,trainer)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each loop; the best one counts")
    parser.add_argument("--gpu-mfu", action="store_true", help="Llama-3.2-3B-shaped MFU measurement on CUDA")
    parser.add_argument("--no-checkpointing", action="store_true", help="--gpu-mfu without gradient checkpointing")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's peak dense bf16 TFLOP/s")
    parser.add_argument("--model", default=None, help="--gpu-mfu: a random-weight model folder instead of the "
                                                      "Llama-3.2-3B shape built in memory")
    parser.add_argument("--device", default="cuda",
                        help="--gpu-mfu: cuda (default), cuda:N, or cpu with a tiny --model")
    parser.add_argument("--compare-trainer", action="store_true",
                        help="--gpu-mfu: also train with transformers.Trainer + peft on the same model and data")
    parser.add_argument("--json", default=None, help="--gpu-mfu: write the numbers to this JSON file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecation notices from peft/transformers internals
    if args.gpu_mfu:
        args.batch_size = args.batch_size or 4
        args.max_length = args.max_length or 2048
        args.lora_r = args.lora_r or 16
        args.steps = max(args.steps, 2)
        return gpu_mfu(args)
    args.batch_size = args.batch_size or 4
    args.max_length = args.max_length or 1024
    args.lora_r = args.lora_r or 8
    cpu_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
