"""Distilling into a LoRA adapter: one training run, top to bottom.

    result = train_lora(model, tokenizer, examples, config, output_dir)

1. Fit the examples to --max-length: the prompt is cut from the left, a completion never is;
   an example whose completion alone is too long is dropped and counted.
2. Seed everything; wrap the student with peft LoRA (on 4-bit base weights with --qlora).
3. AdamW over the LoRA weights only, linear warmup then linear decay to zero.
4. One optimizer step = grad_accum micro-batches; its loss is the mean cross-entropy over all
   completion tokens of the step. Logits are computed only at positions that predict a completion
   token, so the vocabulary projection (most of a small model's compute) skips the prompt.
5. After each epoch a checkpoint: adapter safetensors, optimizer/scheduler/RNG state and the step,
   written to a temporary folder and renamed, so `resume` always finds a complete one.
6. The final adapter goes to OUTPUT/adapter; the student's own layers are put back as they were.

The output folder:

    adapter/              adapter_config.json + adapter_model.safetensors (load with attach_adapter)
    checkpoints/epoch-N/  the same, plus trainer_state.pt and state.json (the latest epoch only)
    train_log.jsonl       one line per optimizer step: step, epoch, loss, lr, tokens, seconds

A fixed seed gives the same adapter: bit for bit on CPU, and after a resume too.
"""

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lm.loading import peft_quietly
from smelt.optimizers.distill.lora_config import LoraTrainingConfig
from smelt.optimizers.distill.lora_model import (
    is_quantized,
    lora_targets,
    merge_adapter,
    peft_lora_config,
    require_qlora,
)
from smelt.optimizers.distill.lora_resources import ResourceEstimate, check_fits, estimate_resources
from smelt.optimizers.distill.sft_data import IGNORE_INDEX, SftExample, collate_sft, fit_examples

__all__ = [
    "ResourceEstimate",
    "TrainingResult",
    "check_fits",
    "estimate_resources",
    "merge_adapter",
    "train_lora",
]

ADAPTER = "adapter"
CHECKPOINTS = "checkpoints"
LOG_NAME = "train_log.jsonl"
LENGTH_WINDOW = 16  # batches per window of examples sorted by length (less padding; order still shuffled)


@dataclass
class TrainingResult:
    adapter_dir: Path
    losses: list[float]  # one per optimizer step
    steps: int
    tokens: int  # prompt + completion tokens trained on, padding excluded
    seconds: float  # time spent in training steps (checkpoint saves excluded)
    tokens_per_second: float
    examples: int
    dropped: int  # examples whose completion alone is longer than --max-length
    log_path: Path


def train_lora(
    model,
    tokenizer,
    examples: list[SftExample],
    config: LoraTrainingConfig,
    output_dir: Path,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> TrainingResult:
    """Train a LoRA adapter on ``examples`` and save it under ``output_dir/adapter``."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    output_dir = Path(output_dir)
    device = next(model.parameters()).device
    if config.qlora:
        require_qlora(str(device))
        if not is_quantized(model):
            raise SmeltError("--qlora: the student has full-precision weights; load it with load_for_training()")
    if config.bf16 and device.type != "cuda":
        raise SmeltError(f"--bf16 needs a CUDA GPU; on {device.type} training runs in fp32 (drop --bf16)")

    # 1. Data.
    examples, dropped = fit_examples(list(examples), config.max_length, tokenizer.bos_token_id)
    if dropped:
        log(f"[smelt] dropped {dropped} example(s) whose completion alone exceeds --max-length {config.max_length}")
    if not examples:
        raise SmeltError(f"no training example fits in --max-length {config.max_length}; raise --max-length")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches_per_epoch = math.ceil(len(examples) / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    lengths = [len(example) for example in examples]
    fingerprint = _fingerprint(config, examples)

    # 2. Where to start: fresh, or the latest complete checkpoint.
    checkpoints = output_dir / CHECKPOINTS
    if not resume and (checkpoints.exists() or (output_dir / ADAPTER).exists()):
        raise SmeltError(f"{output_dir} already holds a training run; pass --resume to continue it, or a new folder")
    checkpoint = _latest_checkpoint(checkpoints) if resume else None
    saved = json.loads((checkpoint / "state.json").read_text()) if checkpoint else None
    if saved and saved["fingerprint"] != fingerprint:
        changed = [k for k, v in config.to_dict().items() if saved["config"].get(k) != v]
        what = ", ".join(f"{k}: {saved['config'].get(k)!r} -> {config.to_dict()[k]!r}" for k in changed)
        raise SmeltError(
            f"--resume: the checkpoint {checkpoint} was made with {what or 'different training examples'}; "
            "rerun with the same data and settings, or train into a new output folder"
        )

    # 3. The model: memory check, seed, LoRA wrap.
    estimate = estimate_resources(model, config, str(device), max(len(e.completion_ids) for e in examples))
    check_fits(estimate)
    targets = _targets_noting_missing(model, config, log)
    _seed_everything(config.seed)
    was_training = model.training
    if config.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if config.gradient_checkpointing:
        _set_checkpointing(model, True)
    with peft_quietly():
        peft_model = get_peft_model(model, peft_lora_config(config))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    log(
        f"[smelt] LoRA r={config.r} on {len(targets)} modules: {estimate.summary()}; "
        f"{len(examples)} examples, {total_steps} steps ({config.epochs} epochs x {steps_per_epoch}), "
        f"batch {config.batch_size} x accum {config.grad_accum}, max length {config.max_length}, on {device}"
    )

    # 4. Optimizer and schedule over the LoRA weights only.
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = math.ceil(config.warmup_ratio * total_steps)

    def warmup_then_decay(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay)

    step, start_epoch, tokens, seconds, losses = 0, 0, 0, 0.0, []
    if saved:
        set_peft_model_state_dict(peft_model, load_file(str(checkpoint / "adapter_model.safetensors")))
        trainer_state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(trainer_state["optimizer"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        _set_rng_state(trainer_state["rng"])
        step, start_epoch, tokens, seconds = saved["step"], saved["epoch"], saved["tokens"], saved["seconds"]
        losses = saved["losses"]
        log(f"[smelt] resuming from {checkpoint}: epoch {start_epoch}/{config.epochs}, step {step}/{total_steps}")
    elif resume:
        log(f"[smelt] no checkpoint in {checkpoints}; starting from the beginning")

    # 5. The loop.
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / LOG_NAME
    _truncate_log(log_path, step)
    compute = torch.autocast("cuda", dtype=torch.bfloat16) if config.bf16 else nullcontext()
    peft_model.train()
    bar = tqdm(total=total_steps, initial=step, desc="LoRA", unit="step", disable=None, dynamic_ncols=True)
    try:
        with log_path.open("a", encoding="utf-8") as log_file:
            for epoch in range(start_epoch, config.epochs):
                batches = _epoch_batches(lengths, config.batch_size, config.seed + epoch)
                for index, first in enumerate(range(0, len(batches), config.grad_accum)):
                    started = time.perf_counter()
                    group = [
                        collate_sft([examples[i] for i in batch], pad_id=pad_id, max_length=config.max_length)
                        for batch in batches[first : first + config.grad_accum]
                    ]
                    n_targets = sum(int((micro["labels"] != IGNORE_INDEX).sum()) for micro in group)
                    step_loss = torch.zeros((), device=device)
                    for micro in group:
                        micro = {name: tensor.to(device) for name, tensor in micro.items()}
                        with compute:
                            loss_sum = _completion_loss_sum(peft_model, micro)
                        (loss_sum / n_targets).backward()
                        step_loss += loss_sum.detach()
                        tokens += int(micro["attention_mask"].sum())
                    if config.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                    lr = scheduler.get_last_lr()[0]
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    losses.append(step_loss.item() / n_targets)
                    seconds += time.perf_counter() - started
                    record = {
                        "step": step,
                        "epoch": round(epoch + (index + 1) / steps_per_epoch, 4),
                        "loss": round(losses[-1], 6),
                        "lr": lr,
                        "tokens": tokens,
                        "seconds": round(seconds, 3),
                    }
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.1e}")
                state = {"epoch": epoch + 1, "step": step, "tokens": tokens, "seconds": seconds, "losses": losses}
                state |= {"fingerprint": fingerprint, "config": config.to_dict()}
                _save_checkpoint(peft_model, optimizer, scheduler, checkpoints, state)

        # 6. The adapter.
        adapter_dir = _save_atomically(peft_model.save_pretrained, output_dir / ADAPTER)
    finally:
        bar.close()
        peft_model.unload()  # the student's own layers go back in place
        if config.gradient_checkpointing:
            _set_checkpointing(model, False)
        model.train(was_training)

    log(f"[smelt] adapter saved to {adapter_dir}" + (f" (final loss {losses[-1]:.3f})" if losses else ""))
    return TrainingResult(
        adapter_dir=adapter_dir,
        losses=losses,
        steps=step,
        tokens=tokens,
        seconds=seconds,
        tokens_per_second=tokens / seconds if seconds else 0.0,
        examples=len(examples),
        dropped=dropped,
        log_path=log_path,
    )


def _completion_loss_sum(model, batch: dict):
    """Summed cross-entropy over the completion tokens, with logits only where a completion token is predicted."""
    import torch
    import torch.nn.functional as F

    labels = batch["labels"]
    predicts = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = predicts
    out = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep, use_cache=False
    )
    logits = out.logits
    if logits.ndim == 3:  # a model that ignores a mask in logits_to_keep computed every position
        logits = logits[keep]
    return F.cross_entropy(logits.float(), labels[:, 1:][predicts], reduction="sum")


def _epoch_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches of example indices; within windows, examples of similar length share a batch."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * LENGTH_WINDOW
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _targets_noting_missing(model, config: LoraTrainingConfig, log) -> dict[str, tuple[int, int]]:
    """The modules to adapt; lora_targets refuses names that match nothing at all, a partial miss is worth a line."""
    found = lora_targets(model, config)
    if not config.all_linear:
        missing = [t for t in config.target_modules if not any(n == t or n.endswith(f".{t}") for n in found)]
        if missing:
            log(f"[smelt] --target-modules: this model has no {', '.join(missing)}; adapting the others only")
    return found


def _set_checkpointing(model, on: bool) -> None:
    """Activation (gradient) checkpointing on or off, under whichever name this transformers version uses."""
    if on:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # the frozen embeddings' output must carry grad into checkpointed blocks
    else:
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
        model.disable_input_require_grads()


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    torch.manual_seed(seed)  # every device


def _rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    random.setstate(tuple(s if not isinstance(s, list) else tuple(s) for s in state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fingerprint(config: LoraTrainingConfig, examples: list[SftExample]) -> str:
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for example in examples:
        digest.update(json.dumps([example.prompt_ids, example.completion_ids]).encode())
    return digest.hexdigest()


def _latest_checkpoint(checkpoints: Path) -> Path | None:
    complete = [p for p in checkpoints.glob("epoch-*") if (p / "state.json").is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[1]), default=None)


def _save_atomically(save: Callable[[Path], None], target: Path) -> Path:
    """Write a folder under a temporary name, then rename it into place."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    save(partial)
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial, target)
    return target


def _save_checkpoint(peft_model, optimizer, scheduler, checkpoints: Path, state: dict) -> Path:
    import torch

    def save(folder: Path) -> None:
        peft_model.save_pretrained(folder)
        trainer_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()}
        torch.save(trainer_state, folder / "trainer_state.pt")
        (folder / "state.json").write_text(json.dumps(state))  # written last: its presence marks a complete save

    checkpoints.mkdir(parents=True, exist_ok=True)
    target = _save_atomically(save, checkpoints / f"epoch-{state['epoch']}")
    for older in checkpoints.glob("epoch-*"):
        if older != target:
            shutil.rmtree(older, ignore_errors=True)
    return target


def _truncate_log(log_path: Path, step: int) -> None:
    """Keep the log lines up to the checkpoint's step (an interrupted epoch's lines are trained again)."""
    if not log_path.exists():
        return
    kept = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut short by the interruption
            continue
    partial = log_path.with_name(f".{log_path.name}.partial")
    partial.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(partial, log_path)
