"""Will this LoRA run fit? Parameter counts and a peak-memory estimate, before any memory is spent.

The estimate is deliberately simple (nanoGPT-style arithmetic, not a profiler):

    weights      what the base parameters take (4-bit linear layers at ~4.5 bits with --qlora)
    adapter      16 bytes per LoRA parameter: fp32 weight, gradient and AdamW's two moments
    activations  per token and layer, the tensors kept for backward in a decoder block
                 (~7h + 3q + 3kv + 4i values; with gradient checkpointing only the block inputs
                 plus one block), for batch_size x max_length tokens
    logits       fp32 logits, their softmax and gradient over the vocabulary, for the completion
                 tokens only (the training loop computes no others)
"""

import math
from dataclasses import dataclass
from pathlib import Path

from smelt.errors import SmeltError
from smelt.optimizers.distill.lora_config import LoraTrainingConfig
from smelt.optimizers.distill.lora_model import is_quantized, lora_parameter_count, lora_targets

GIB = 1024**3
HEADROOM = 0.9  # use at most this share of the free memory: allocator caches and fragmentation take the rest


@dataclass(frozen=True)
class ResourceEstimate:
    device: str
    total_params: int
    trainable_params: int
    weight_bytes: int
    adapter_bytes: int
    activation_bytes: int
    peak_bytes: int
    resident_bytes: int  # weights already held in the device's memory (so not counted against the free memory)
    available_bytes: int | None  # free memory on the device now; None when unknown
    config: LoraTrainingConfig

    @property
    def needed_bytes(self) -> int:
        return self.peak_bytes - self.resident_bytes

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.needed_bytes <= HEADROOM * self.available_bytes

    def summary(self) -> str:
        free = "unknown" if self.available_bytes is None else f"{self.available_bytes / GIB:.1f} GiB"
        return (
            f"{self.trainable_params / 1e6:.2f}M trainable of {self.total_params / 1e6:.0f}M params; "
            f"peak ~{self.peak_bytes / GIB:.1f} GiB (weights {self.weight_bytes / GIB:.1f}, "
            f"adapter+optimizer {self.adapter_bytes / GIB:.2f}, activations {self.activation_bytes / GIB:.1f}); "
            f"free on {self.device}: {free}"
        )


def estimate_resources(
    model, config: LoraTrainingConfig, device: str | None = None, completion_tokens: int | None = None
) -> ResourceEstimate:
    """Parameter counts and expected peak memory of training ``model`` under ``config`` on ``device``.

    completion_tokens: the longest completion in the data, if known; else a quarter of max_length.
    """
    import torch

    params = list(model.parameters())  # tied weights appear once
    model_device = params[0].device if params else torch.device("cpu")
    device = str(device or model_device)
    total = sum(_count(p) for p in params)
    trainable = lora_parameter_count(lora_targets(model, config), config.r)

    loaded_bytes = sum(p.numel() * p.element_size() for p in params)
    if config.qlora and not is_quantized(model):
        output = model.get_output_embeddings()
        linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not output)
        weight_bytes = int(linear * 4.5 / 8 + (total - linear) * 2)
    else:
        weight_bytes = loaded_bytes
    resident = loaded_bytes if torch.device(device).type == model_device.type else 0

    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = text.hidden_size
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    q_dim = heads * head_dim
    kv_dim = (getattr(text, "num_key_value_heads", None) or heads) * head_dim
    inner = getattr(text, "intermediate_size", None) or 4 * hidden
    layers = text.num_hidden_layers
    act_size = 2 if (config.bf16 or config.qlora) else 4
    tokens = config.batch_size * config.max_length
    per_block = (7 * hidden + 3 * q_dim + 3 * kv_dim + 4 * inner) * act_size
    if config.gradient_checkpointing:
        activations = tokens * (layers * hidden * act_size + per_block)
    else:
        activations = tokens * layers * per_block
    completion = config.max_length // 4 if completion_tokens is None else min(completion_tokens, config.max_length)
    activations += config.batch_size * completion * text.vocab_size * 4 * 3

    adapter = trainable * 16
    return ResourceEstimate(
        device=device,
        total_params=total,
        trainable_params=trainable,
        weight_bytes=weight_bytes,
        adapter_bytes=adapter,
        activation_bytes=activations,
        peak_bytes=weight_bytes + adapter + activations,
        resident_bytes=resident,
        available_bytes=available_memory(device),
        config=config,
    )


def _count(param) -> int:
    """Parameters in a tensor; a 4-bit bitsandbytes weight packs two per byte, its quant_state knows the shape."""
    shape = getattr(getattr(param, "quant_state", None), "shape", None)
    return math.prod(shape) if shape is not None else param.numel()


def check_fits(estimate: ResourceEstimate) -> None:
    """Refuse a run that cannot fit in the device's free memory, saying what to lower."""
    if estimate.fits:
        return
    c = estimate.config
    remedies = [f"--batch-size ({c.batch_size})", f"--max-length ({c.max_length})"]
    extra = []
    if not c.gradient_checkpointing:
        extra.append("pass --gradient-checkpointing")
    if estimate.device.startswith("cuda") and not c.qlora:
        extra.append("pass --qlora (4-bit base weights)")
    advice = "lower " + " or ".join(remedies) + "".join(f", or {e}" for e in extra)
    raise SmeltError(
        f"LoRA training needs about {estimate.needed_bytes / GIB:.1f} GiB more on {estimate.device} but only "
        f"{estimate.available_bytes / GIB:.1f} GiB is free (weights {estimate.weight_bytes / GIB:.1f} GiB, "
        f"activations {estimate.activation_bytes / GIB:.1f} GiB); {advice}"
    )


def available_memory(device: str) -> int | None:
    """Free bytes on a CUDA device (plus torch's cached blocks), or available RAM for the CPU."""
    import torch

    if device.startswith("cuda"):
        dev = torch.device(device)
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
