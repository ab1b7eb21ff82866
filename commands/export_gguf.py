"""A distilled student as GGUF, written with the ``gguf`` package (no llama.cpp build).

A GGUF holds the architecture's settings and the tokenizer besides the weights, and only llama.cpp's converter
knows how to write them for each architecture from a transformers folder. smelt has them where the student came
from a GGUF itself: the embedded model, shipped as a Q4_K_M GGUF (``lm.gguf_files.shipped_gguf``).

    f16     the merged model: that file's metadata and tokenizer, the merged weights under its tensor names (``gguf``'s
            own name map) in float16 (norms float32), undoing what the conversion to transformers did (Gemma's norm
            weights are stored plus one)
    q8_0    the same in Q8_0 (a matrix whose rows do not split into blocks of 32 in float16)
    q4_k_m  the shipped Q4_K_M file itself and the adapter as a GGUF LoRA adapter (``lm.lora_gguf``), which llama.cpp
            and Ollama apply on it: the gguf package has no K-quant quantizer to write a merged one
"""

from pathlib import Path

import numpy as np

from smelt.errors import SmeltError

QUANTS = ("f16", "q8_0", "q4_k_m")
MERGED_QUANTS = ("f16", "q8_0")
# What the transformers conversion subtracted from a weight, by architecture and GGUF tensor name suffix.
_STORED_OFFSET = {"gemma3": {"norm.weight": 1.0}}


def write_merged_gguf(merged_model, source: Path, out: Path, quant: str) -> Path:
    """``merged_model`` (a transformers model with ``source``'s architecture and weights, an adapter merged in) as a
    GGUF file at ``out``, with ``source``'s metadata and tokenizer."""
    import gguf

    if quant not in MERGED_QUANTS:
        raise SmeltError(f"--quant {quant}: a merged GGUF is written in {', '.join(MERGED_QUANTS)}")
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    if arch not in _STORED_OFFSET:
        raise SmeltError(f"{source}: smelt writes GGUF for {', '.join(_STORED_OFFSET)} models, not {arch}")
    shipped = {tensor.name: tensor for tensor in reader.tensors}
    weights = _gguf_weights(merged_model, arch, shipped, source)
    writer = gguf.GGUFWriter(out, arch)
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue  # the writer writes these itself
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        value = int(file_type) if field.name == "general.file_type" else field.contents()
        writer.add_key_value(field.name, value, value_type, sub_type=sub_type)
    for tensor in reader.tensors:  # the source's order
        data, qtype = _encoded(weights[tensor.name], quant)
        writer.add_tensor(tensor.name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _gguf_weights(model, arch: str, shipped: dict, source: Path) -> dict[str, np.ndarray]:
    """The model's weights as float32 arrays under the GGUF's tensor names, with the stored offsets put back."""
    import gguf

    tied = getattr(model.config, "tie_word_embeddings", False)
    n_blocks = model.config.num_hidden_layers
    names = gguf.get_tensor_name_map(_arch_enum(arch), n_blocks)
    weights = {}
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # the GGUF keeps the embedding once
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name not in shipped:
            raise SmeltError(f"{source}: the student's weight {hf_name} has no tensor there ({name}); it is not the "
                             "model this GGUF holds")
        array = tensor.detach().float().cpu().numpy()
        offset = next((value for suffix, value in _STORED_OFFSET[arch].items() if name.endswith(suffix)), 0.0)
        weights[name] = array + np.float32(offset) if offset else array
    missing = sorted(set(shipped) - set(weights))
    if missing:
        raise SmeltError(f"{source}: tensors {', '.join(missing[:3])} have no weight in the student; it is not the "
                         "model this GGUF holds")
    _check_same_model(weights, shipped, source)
    return weights


def _check_same_model(weights: dict, shipped: dict, source: Path) -> None:
    """The shipped float32 tensors (norms: a LoRA adapter never changes them) must come back exactly: a wrong name
    or offset would otherwise write a file that loads and answers nonsense."""
    import gguf

    for name, tensor in shipped.items():
        if tensor.tensor_type == gguf.GGMLQuantizationType.F32 and not np.array_equal(
                np.asarray(tensor.data).reshape(weights[name].shape), weights[name]):
            raise SmeltError(f"{source}: tensor {name} differs from the student's weight; the student is not the "
                             "model this GGUF holds")


def _encoded(array: np.ndarray, quant: str):
    """(data, GGML type) of one tensor for the file: a vector in float32, a matrix in the quant's type."""
    import gguf
    from gguf import GGMLQuantizationType as Type

    if array.ndim == 1:
        return array.astype(np.float32), Type.F32
    if quant == "f16" or array.shape[-1] % gguf.GGML_QUANT_SIZES[Type.Q8_0][0]:
        return array.astype(np.float16), Type.F16
    return gguf.quants.quantize(array, Type.Q8_0), Type.Q8_0


def _arch_enum(arch: str):
    import gguf

    return next(enum for enum, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
