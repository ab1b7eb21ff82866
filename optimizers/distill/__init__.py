"""Distillation: teacher traces to SFT data, and the LoRA adapter trained on them."""
