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

import json
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lm.devices import cuda_bf16_native
from smelt.lm.loading import peft_quietly
from smelt.optimizers.distill.checkpoints import (
    ADAPTER,
    CHECKPOINTS,
    TrainingProgress,
    fingerprint,
    restore,
    save_atomically,
    save_checkpoint,
    starting_checkpoint,
    truncate_log,
)
from smelt.optimizers.distill.lora_config import LoraTrainingConfig
from smelt.optimizers.distill.lora_model import (
    is_quantized,
    lora_targets,
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
    "train_lora",
]

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


# Long on purpose: a training run read top to bottom, as a torchtune recipe (numbered steps); each step's own
# work is in a function of its own (checkpoints.py, _optimizer_step, _warmup_then_decay).
def train_lora(
    model,
    tokenizer,
    examples: list[SftExample],
    config: LoraTrainingConfig,
    output_dir: Path,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> TrainingResult:
    """Train a LoRA adapter on ``examples`` and save it under ``output_dir/adapter``. The recipe, top to bottom:
    data, where to start, the model, optimizer and schedule, the loop (a checkpoint each epoch), the adapter."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from tqdm.auto import tqdm

    output_dir = Path(output_dir)
    device = next(model.parameters()).device
    config = _native_precision(config, device, log)
    _check_precision(model, config, device)

    # 1. Data.
    examples, dropped = fit_examples(list(examples), config.max_length, tokenizer.bos_token_id)
    if dropped:
        log(f"[smelt] dropped {dropped} example(s) whose completion alone exceeds --max-length {config.max_length}")
    if not examples:
        raise SmeltError(f"no training example fits in --max-length {config.max_length}; raise --max-length")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    steps_per_epoch = math.ceil(math.ceil(len(examples) / config.batch_size) / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    lengths = [len(example) for example in examples]
    examples_fingerprint = fingerprint(config, examples)

    # 2. Where to start: fresh, or the latest complete checkpoint.
    checkpoints = output_dir / CHECKPOINTS
    checkpoint, saved = starting_checkpoint(output_dir, config, examples_fingerprint, resume)

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
    trainable = _fp32_master_weights(peft_model)
    log(
        f"[smelt] LoRA r={config.r} on {len(targets)} modules: {estimate.summary()}; "
        f"{len(examples)} examples, {total_steps} steps ({config.epochs} epochs x {steps_per_epoch}), "
        f"batch {config.batch_size} x accum {config.grad_accum}, max length {config.max_length}, on {device}"
    )

    # 4. Optimizer and schedule over the LoRA weights only; a checkpoint's state restored over them.
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = _warmup_then_decay(optimizer, config, total_steps)
    progress = TrainingProgress()
    if saved:
        progress = restore(checkpoint, saved, peft_model, optimizer, scheduler)
        log(f"[smelt] resuming from {checkpoint}: epoch {progress.epoch}/{config.epochs}, "
            f"step {progress.step}/{total_steps}")
    elif resume:
        log(f"[smelt] no checkpoint in {checkpoints}; starting from the beginning")

    # 5. The loop: an optimizer step per grad_accum batches, a line in the log each step, a checkpoint each epoch.
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / LOG_NAME
    truncate_log(log_path, progress.step)
    compute = _compute_context(config, device)
    peft_model.train()
    bar = tqdm(total=total_steps, initial=progress.step, desc="LoRA", unit="step", disable=None, dynamic_ncols=True)
    try:
        with log_path.open("a", encoding="utf-8") as log_file:
            for epoch in range(progress.epoch, config.epochs):
                batches = _epoch_batches(lengths, config.batch_size, config.seed + epoch)
                for index, first in enumerate(range(0, len(batches), config.grad_accum)):
                    group = [collate_sft([examples[i] for i in batch], pad_id=pad_id, max_length=config.max_length)
                             for batch in batches[first : first + config.grad_accum]]
                    lr = _optimizer_step(peft_model, group, trainable, optimizer, scheduler, config, compute,
                                         device, progress)
                    log_file.write(json.dumps({
                        "step": progress.step, "epoch": round(epoch + (index + 1) / steps_per_epoch, 4),
                        "loss": round(progress.losses[-1], 6), "lr": lr, "tokens": progress.tokens,
                        "seconds": round(progress.seconds, 3)}) + "\n")
                    log_file.flush()
                    bar.update(1)
                    bar.set_postfix(loss=f"{progress.losses[-1]:.3f}", lr=f"{lr:.1e}")
                progress.epoch = epoch + 1
                save_checkpoint(peft_model, optimizer, scheduler, checkpoints,
                                 progress.state() | {"fingerprint": examples_fingerprint, "config": config.to_dict()})

        # 6. The adapter.
        adapter_dir = save_atomically(peft_model.save_pretrained, output_dir / ADAPTER)
    finally:
        bar.close()
        peft_model.unload()  # the student's own layers go back in place
        if config.gradient_checkpointing:
            _set_checkpointing(model, False)
        model.train(was_training)

    losses = progress.losses
    log(f"[smelt] adapter saved to {adapter_dir}" + (f" (final loss {losses[-1]:.3f})" if losses else ""))
    return TrainingResult(
        adapter_dir=adapter_dir, losses=losses, steps=progress.step, tokens=progress.tokens,
        seconds=progress.seconds, tokens_per_second=progress.tokens / progress.seconds if progress.seconds else 0.0,
        examples=len(examples), dropped=dropped, log_path=log_path,
    )


def _native_precision(config: LoraTrainingConfig, device, log) -> LoraTrainingConfig:
    """bf16 autocast only on a GPU that computes in bf16 natively: an older one (a T4, a V100) emulates it, slower
    than fp32, so there the run trains in fp32 and says so."""
    if config.bf16 and device.type == "cuda" and not cuda_bf16_native(str(device)):
        log(f"[smelt] {device} has no native bf16 (compute capability below 8.0): training in fp32")
        return replace(config, bf16=False)
    return config


def _check_precision(model, config: LoraTrainingConfig, device) -> None:
    if config.qlora:
        require_qlora(str(device))
        if not is_quantized(model):
            raise SmeltError("--qlora: the student has full-precision weights; load it with load_for_training()")
    if config.bf16 and device.type != "cuda":
        raise SmeltError(f"--bf16 needs a CUDA GPU; on {device.type} training runs in fp32 (drop --bf16)")


def _compute_context(config: LoraTrainingConfig, device):
    """Where the forward and backward passes compute: bf16 autocast (bf16 matrix products, fp32 reductions and
    loss) with config.bf16, else the weights' own dtypes."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else nullcontext()


def _fp32_master_weights(peft_model) -> list:
    """The trainable (LoRA) parameters, in fp32 whatever the student's dtype: bf16 autocast computes with bf16
    copies, while AdamW updates fp32 weights (updates of a few 1e-4 would round away in bf16)."""
    import torch

    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    for parameter in trainable:
        if parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
    return trainable


def _warmup_then_decay(optimizer, config: LoraTrainingConfig, total_steps: int):
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0."""
    import torch

    warmup = math.ceil(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _optimizer_step(peft_model, group: list[dict], trainable, optimizer, scheduler, config: LoraTrainingConfig,
                    compute, device, progress: TrainingProgress) -> float:
    """One optimizer step over a group of micro-batches (gradient accumulation), the loss averaged over all their
    completion tokens; ``progress`` counts it. Returns the learning rate the step used."""
    import torch

    started = time.perf_counter()
    n_targets = sum(int((micro["labels"] != IGNORE_INDEX).sum()) for micro in group)
    step_loss = torch.zeros((), device=device)
    for micro in group:
        micro = {name: tensor.to(device) for name, tensor in micro.items()}
        with compute:
            loss_sum = _completion_loss_sum(peft_model, micro)
        (loss_sum / n_targets).backward()
        step_loss += loss_sum.detach()
        progress.tokens += int(micro["attention_mask"].sum())
    if config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    progress.step += 1
    progress.losses.append(step_loss.item() / n_targets)
    progress.seconds += time.perf_counter() - started
    return lr


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


