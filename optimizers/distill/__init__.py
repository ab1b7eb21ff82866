"""Distillation: teacher traces to SFT data, and the LoRA adapter trained on them."""

__all__ = [
    "adapter", "checkpoints", "lora_config", "lora_model", "lora_resources", "lora_training", "sft_data",
    "sft_examples", "synthetic_examples",
]
