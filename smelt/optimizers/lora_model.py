"""The student around a LoRA run: which modules get adapters, a 4-bit copy for QLoRA, merging for serving."""

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from smelt.errors import SmeltError
from smelt.lm.devices import resolve_device
from smelt.lm.loading import LoadedModel, attach_adapter, load_model
from smelt.lm.specs import ModelSpec
from smelt.optimizers.lora_config import LoraTrainingConfig


def peft_lora_config(config: LoraTrainingConfig):
    """The peft LoraConfig for these settings (plain LoRA, no bias, causal LM)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules if config.all_linear else list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def lora_targets(model, config: LoraTrainingConfig) -> dict[str, tuple[int, int]]:
    """The modules peft will give an adapter, as name -> (in features, out features), without wrapping.

    Follows peft's matching: a listed name matches a module whose full name equals it or ends with
    ``.name``; ``all-linear`` means every linear layer except the output embedding (lm_head).
    """
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    targets = {}
    for name, module in model.named_modules():
        shape = _in_out(module)
        if shape is None or not name:
            continue
        if config.all_linear:
            chosen = module is not output and _is_linear(module)
        else:
            chosen = any(name == t or name.endswith(f".{t}") for t in config.target_modules)
        if chosen:
            targets[name] = shape
    if not targets:
        available = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if name and _is_linear(m)})
        raise SmeltError(
            f"--lora-targets {','.join(config.target_modules) if not config.all_linear else config.target_modules}: "
            f"no such layer in this model; its linear layers are named {', '.join(available)} (or use all-linear)"
        )
    return targets


def lora_parameter_count(targets: dict[str, tuple[int, int]], r: int) -> int:
    """Parameters LoRA adds: r x (in + out) per adapted module (A is r x in, B is out x r)."""
    return sum(r * (n_in + n_out) for n_in, n_out in targets.values())


def _is_linear(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"  # transformers' GPT-2 Conv1D


def _in_out(module) -> tuple[int, int] | None:
    import torch

    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D":
        return module.weight.shape[0], module.weight.shape[1]
    if isinstance(module, torch.nn.Embedding):
        return module.num_embeddings, module.embedding_dim
    return None


def is_quantized(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def require_qlora(device: str) -> None:
    """QLoRA needs a CUDA GPU and bitsandbytes; say so in one line otherwise."""
    if not device.startswith("cuda"):
        raise SmeltError(
            f"--qlora needs a CUDA GPU (4-bit bitsandbytes kernels), and the student is on {device}; "
            "drop --qlora to train in full precision"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SmeltError("--qlora needs the bitsandbytes package: pip install bitsandbytes")


def load_for_training(spec: ModelSpec, config: LoraTrainingConfig, device: str = "auto") -> LoadedModel:
    """The student to train: the shared in-process model, or with --qlora a fresh copy with 4-bit weights."""
    device = resolve_device(device)
    if not config.qlora:
        return load_model(spec, device=device)
    require_qlora(device)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from smelt.lm import loading
    from smelt.lm.embedded import ensure_embedded_model

    source = str(ensure_embedded_model()) if spec.kind == "embedded" else loading._resolve_hf_source(spec)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    kwargs: dict[str, Any] = {"quantization_config": quantization, "dtype": torch.bfloat16, "device_map": {"": device}}
    if Path(source).is_dir():
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    else:
        tokenizer = loading._from_hub(AutoTokenizer, source)
        model = loading._from_hub(AutoModelForCausalLM, source, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, spec, device, source)


def merge_adapter(base_model, adapter_dir: str | Path, out_dir: str | Path, tokenizer=None) -> Path:
    """Write base + adapter as one full model folder (safetensors weights, config, tokenizer) for serving.

    The base model is left as it was: the merged weights are computed beside it, not written into it.
    The tokenizer defaults to the one saved with the base model.
    """
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SmeltError(f"{out_dir} already exists and is not empty; choose a new folder for the merged model")
    if is_quantized(base_model):
        raise SmeltError("merging needs the full-precision student: load it without --qlora, then merge")
    if isinstance(base_model, PeftModel):
        raise SmeltError("merge_adapter needs the base model without an adapter attached")
    source = base_model.name_or_path
    peft_model = attach_adapter(base_model, adapter_dir, base_source=source)
    try:
        if any(getattr(c, "use_dora", False) for c in peft_model.peft_config.values()):
            raise SmeltError(f"{adapter_dir}: DoRA adapters are not supported for merging; train a plain LoRA")
        deltas = {}
        for name, module in peft_model.get_base_model().named_modules():
            if isinstance(module, LoraLayer):
                for adapter in module.lora_A:
                    deltas[name] = deltas.get(name, 0) + module.get_delta_weight(adapter).detach()
    finally:
        base_model = peft_model.unload()  # puts the original layers back, unchanged
    state = base_model.state_dict()
    for name, delta in deltas.items():
        key = f"{name}.weight"
        state[key] = (state[key].float() + delta.float()).to(state[key].dtype).contiguous()
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source)
    partial = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        base_model.save_pretrained(partial, state_dict=state)
        tokenizer.save_pretrained(partial)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(partial, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out_dir
