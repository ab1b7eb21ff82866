"""A distilled run's peft LoRA adapter (``adapter/``: adapter_config.json, adapter_model.safetensors) as a GGUF LoRA
adapter that llama.cpp applies on the base model's GGUF file, written with the ``gguf`` package.

The file is what llama.cpp's own converter writes: ``general.type`` "adapter", ``adapter.type`` "lora",
``adapter.lora.alpha``, the base model's architecture, and for each adapted weight ``<gguf tensor>.lora_a`` (rank x
in features) and ``.lora_b`` (out features x rank), the tensor names mapped from transformers' module names by the
``gguf`` package's table for that architecture. llama.cpp scales each product by alpha / rank, as peft does for
plain LoRA; where peft scales otherwise (rsLoRA: alpha / sqrt(rank)), the difference is folded into ``lora_b``.
"""

import hashlib
import json
import math
import os
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lm.embedded import cache_root
from smelt.lm.gguf_files import file_sha256, read_gguf_header

_PEFT_PREFIX = "base_model.model."
# A multimodal checkpoint's language model, named as its text-only model is in the GGUF table (as llama.cpp does).
_LANGUAGE_MODEL_PREFIXES = (("model.language_model.", "model."), ("language_model.", ""))


def gguf_lora_adapter(adapter_dir: Path, base_gguf: Path) -> Path:
    """The GGUF LoRA adapter for ``adapter_dir`` on ``base_gguf``, converted once into smelt's cache (keyed by the
    adapter's bytes and the base file's) and read from there afterwards. A run directory is never written to."""
    config_file, weights_file = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise SmeltError(f"{adapter_dir}: not a peft LoRA adapter folder (adapter_config.json and "
                         "adapter_model.safetensors); it cannot be applied to a GGUF model")
    key = hashlib.sha256()
    for part in (config_file.read_bytes(), file_sha256(weights_file).encode(), file_sha256(base_gguf).encode()):
        key.update(part)
    target = cache_root() / "lora-gguf" / f"{key.hexdigest()[:24]}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        try:
            write_gguf_lora(adapter_dir, base_gguf, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


def write_gguf_lora(adapter_dir: Path, base_gguf: Path, out_file: Path) -> None:
    """Write ``adapter_dir`` (peft LoRA) as a GGUF LoRA adapter for the model in ``base_gguf`` to ``out_file``;
    refuses in one line an adapter llama.cpp cannot apply (DoRA, saved whole modules, biases, per-layer ranks) or
    one made for other weights (a layer the base file lacks, or of another shape)."""
    import gguf
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    _check_plain_lora(config, adapter_dir)
    header = read_gguf_header(base_gguf)
    metadata, base_shapes = header.metadata, header.tensors
    architecture = metadata.get("general.architecture")
    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}.get(architecture)
    if arch is None:
        raise SmeltError(f"{base_gguf}: architecture {architecture!r} is not one the gguf package knows")
    names = gguf.get_tensor_name_map(arch, int(metadata.get(f"{architecture}.block_count") or 0))

    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    pairs: dict[str, dict] = {}
    for name, tensor in load_file(str(adapter_dir / "adapter_model.safetensors"), device="cpu").items():
        module, _, part = name.removeprefix(_PEFT_PREFIX).rpartition(".lora_")
        if part not in ("A.weight", "B.weight"):
            raise SmeltError(f"{adapter_dir}: tensor {name} is not a LoRA A or B matrix of a linear layer; only "
                             "those can be applied on llama.cpp")
        for prefix, replacement in _LANGUAGE_MODEL_PREFIXES:
            if module.startswith(prefix):
                module = replacement + module[len(prefix):]
                break
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None or target not in base_shapes:
            raise SmeltError(f"{adapter_dir}: layer {module} has no weight in {base_gguf.name}; the adapter was made "
                             "for another model")
        pairs.setdefault(target, {})[part[0]] = tensor.float().numpy()

    writer = gguf.GGUFWriter(str(out_file), architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for target, pair in sorted(pairs.items()):
        a, b = pair.get("A"), pair.get("B")
        n_in, n_out = base_shapes[target][:2]  # GGUF lists a weight's dimensions as (in features, out features)
        if a is None or b is None or a.shape != (rank, n_in) or b.shape != (n_out, rank):
            raise SmeltError(f"{adapter_dir}: the LoRA matrices of {target} do not fit {base_gguf.name}'s weight "
                             f"({n_out} x {n_in}, rank {rank}); the adapter was made for another model")
        b = b * (scaling * rank / alpha)  # llama.cpp multiplies by alpha / rank, peft by `scaling` (1.0 for LoRA)
        writer.add_tensor(target.removesuffix(".weight") + ".weight.lora_a", a)
        writer.add_tensor(target.removesuffix(".weight") + ".weight.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _check_plain_lora(config: dict, adapter_dir: Path) -> None:
    """Refuse what a GGUF LoRA adapter cannot hold, naming the adapter_config.json setting."""
    refused = {
        "peft_type": config.get("peft_type") not in (None, "LORA"),
        "use_dora": bool(config.get("use_dora")),
        "modules_to_save": bool(config.get("modules_to_save")),
        "bias": config.get("bias") not in (None, "none"),
        "lora_bias": bool(config.get("lora_bias")),
        "rank_pattern": bool(config.get("rank_pattern")),
        "alpha_pattern": bool(config.get("alpha_pattern")),
        "target_parameters": bool(config.get("target_parameters")),
    }
    setting = next((name for name, bad in refused.items() if bad), None)
    if setting is not None:
        raise SmeltError(f"{adapter_dir / 'adapter_config.json'}: {setting} = {config.get(setting)!r}: llama.cpp "
                         "applies plain LoRA matrices only; run this adapter in-process (without gguf:)")
