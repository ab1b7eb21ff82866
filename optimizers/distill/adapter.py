"""Train a LoRA adapter on SFT rows: load the student for training, check the run fits the device, train, and
sum the run up for the manifest and report."""

from pathlib import Path

from smelt.optimizers.distill.lora_model import load_for_training
from smelt.optimizers.distill.lora_resources import check_fits, estimate_resources
from smelt.optimizers.distill.lora_training import train_lora
from smelt.optimizers.distill.sft_data import tokenize_sft


def train_adapter(student_spec, config, device, rows: list[dict], run_dir: Path, *, resume: bool = False,
                  log=print) -> dict:
    """Train a LoRA adapter on the SFT rows into ``run_dir/adapter`` (checkpoints beside it); returns its summary."""
    student = load_for_training(student_spec, config, device)
    examples = [tokenize_sft(student.tokenizer, row["messages"], row["completion"]) for row in rows]
    estimate = estimate_resources(student.model, config, device,
                                  completion_tokens=max(len(e.completion_ids) for e in examples))
    check_fits(estimate)
    result = train_lora(student.model, student.tokenizer, examples, config, run_dir, resume=resume, log=log)
    return {"steps": result.steps, "examples": result.examples, "dropped": result.dropped,
            "first_loss": round(result.losses[0], 4) if result.losses else None,
            "final_loss": round(result.losses[-1], 4) if result.losses else None,
            "tokens": result.tokens, "train_seconds": round(result.seconds, 1),
            "tokens_per_second": round(result.tokens_per_second, 1),
            "total_parameters": estimate.total_params, "trainable_parameters": estimate.trainable_params}
