"""What improves a program: prompt optimizers (prompt: one table), distill/ (SFT data, LoRA), sweep/ (Optuna)."""
