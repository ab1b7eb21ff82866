"""What improves a program: prompt optimizers (prompt: one table), distill/ (SFT data, LoRA), sweep/ (Optuna)."""

__all__ = [
    "distill", "prompt", "sweep",
]
