"""The student around a LoRA run: which modules get adapters, a 4-bit copy for QLoRA, merging for serving."""

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from smelt.errors import SmeltError
from smelt.lm import loading
from smelt.lm.devices import cuda_bf16_native, resolve_device
from smelt.lm.loading import LoadedModel, adapter_folder, attach_adapter, load_model, peft_quietly
from smelt.lm.specs import ModelSpec
from smelt.optimizers.distill.lora_config import LoraTrainingConfig


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
            f"--target-modules {','.join(config.target_modules) if not config.all_linear else config.target_modules}: "
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
    """QLoRA needs a CUDA GPU and a bitsandbytes that loads; say so in one line otherwise (before any weights load)."""
    if not device.startswith("cuda"):
        raise SmeltError(
            f"--qlora needs a CUDA GPU (4-bit bitsandbytes kernels), and the student is on {device}; "
            "drop --qlora to train in full precision"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SmeltError("--qlora needs the bitsandbytes package: pip install bitsandbytes (offline: bundle it on a "
                         "machine with network access, or drop --qlora to train in full precision)")
    try:
        importlib.import_module("bitsandbytes")
    except Exception as exc:  # noqa: BLE001 - a broken install fails in many ways (missing CUDA libraries, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SmeltError(f"--qlora: bitsandbytes is installed but does not load ({first[:200]}); reinstall it for "
                         "this CUDA, or drop --qlora") from None


def load_for_training(spec: ModelSpec, config: LoraTrainingConfig, device: str = "auto") -> LoadedModel:
    """The student to train: its own fresh copy of the weights (with --qlora, 4-bit ones).

    Training holds this copy beside any copy ``load_model`` serves: peft adds LoRA layers to the module in
    place, and an engine still serving the same model (the teacher, when teacher and student are one model)
    must not run with half-trained adapters. That costs the memory of a second copy while both are loaded;
    ``unload_models()`` before training frees the served one when nothing serves it any more.
    """
    device = resolve_device(device)
    if not config.qlora:
        import torch

        # fp32 weights on a CPU: inference may run in bf16 there, but training keeps full precision.
        return load_model(spec, device=device, dtype=torch.float32 if device == "cpu" else None, private=True)
    require_qlora(device)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    source = spec.weights_source()
    # The 4-bit layers compute in bf16 where the GPU does natively, else in fp16 (QLoRA's choice on a T4 or V100).
    compute = torch.bfloat16 if cuda_bf16_native(device) else torch.float16
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )
    kwargs: dict[str, Any] = {"quantization_config": quantization, "dtype": compute, "device_map": {"": device}}
    if Path(source).is_dir():
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    else:
        tokenizer = loading._from_hub(AutoTokenizer, source)
        model = loading._from_hub(AutoModelForCausalLM, source, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, spec, device, source, dtype="nf4")


def merge_adapter(base_model, adapter_dir: str | Path, out_dir: str | Path, tokenizer=None) -> Path:
    """Write base + adapter as one full model folder (safetensors weights, config, tokenizer) for serving.

    The merge is ``merged_copy``'s; ``base_model`` is not changed. The tokenizer defaults to the one saved with the
    base model."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SmeltError(f"{out_dir} already exists and is not empty; choose a new folder for the merged model")
    merged = merged_copy(base_model, adapter_dir)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(merged.name_or_path)
    partial = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        merged.save_pretrained(partial)  # safetensors: the only format transformers 5 writes
        tokenizer.save_pretrained(partial)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(partial, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out_dir


def merged_copy(base_model, adapter_dir: str | Path):
    """Base + adapter as one plain transformers model, in memory.

    peft merges (``merge_and_unload``, so DoRA, rsLoRA and per-layer ranks too) into a copy of the model that
    shares every weight the adapter leaves alone: ``base_model`` is not changed, and only the adapted layers take
    new memory (bench/merge_memory.py). ``base_model`` may be the bare student or the student with this adapter
    attached (a PeftModel, or its base model)."""
    from peft import LoraModel, PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    folder = adapter_folder(adapter_dir)
    model = base_model.get_base_model() if isinstance(base_model, PeftModel) else base_model
    if is_quantized(model):
        raise SmeltError("merging needs the full-precision student: load it without --qlora, then merge")
    with peft_quietly():
        adapted = attach_adapter(_bare_copy(model), folder, base_source=model.name_or_path)
        if not isinstance(adapted.base_model, LoraModel):
            raise SmeltError(f"{folder}: only LoRA adapters can be merged")
        for layer in adapted.modules():
            if isinstance(layer, BaseTunerLayer):  # the merge writes into these weights: give the copy its own
                _own(layer.get_base_layer(), "weight", "bias")
        return adapted.merge_and_unload()


def _bare_copy(model):
    """A copy of ``model`` without any adapter layers whose parameters share ``model``'s storage (new Parameter
    objects, so rebinding one in the copy leaves ``model`` alone)."""
    import copy

    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    memo: dict[int, Any] = {id(b): b for b in model.buffers()}
    memo |= {id(p): torch.nn.Parameter(p.detach(), requires_grad=False) for p in model.parameters()}
    bare = copy.deepcopy(model, memo)
    for name, module in list(bare.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent, _, child = name.rpartition(".")
            setattr(bare.get_submodule(parent), child, module.get_base_layer())
    if hasattr(bare, "peft_config"):
        del bare.peft_config
    return bare


def _own(module, *names: str) -> None:
    """Give ``module`` its own copy of each named parameter it has."""
    import torch

    for name in names:
        tensor = getattr(module, name, None)
        if isinstance(tensor, torch.nn.Parameter):
            setattr(module, name, torch.nn.Parameter(tensor.detach().clone(), requires_grad=False))
