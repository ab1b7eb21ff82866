"""A LoRA training run's checkpoints: what a resumed run starts from, and how each is written whole.

After each epoch: the adapter's safetensors, the optimizer, schedule and random state (trainer_state.pt) and where
training stood (state.json, with a fingerprint of the settings and examples), written to a temporary folder and
renamed, so a resume always finds a complete one made with the same settings and data.
"""

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from smelt.errors import SmeltError
from smelt.optimizers.distill.lora_config import LoraTrainingConfig
from smelt.optimizers.distill.sft_data import SftExample

ADAPTER = "adapter"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainingProgress:
    """How far training has come: what a checkpoint's state.json records and a resumed run starts from."""

    epoch: int = 0
    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    def state(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "tokens": self.tokens, "seconds": self.seconds,
                "losses": self.losses}

def starting_checkpoint(output_dir: Path, config: LoraTrainingConfig, fingerprint: str, resume: bool):
    """(checkpoint folder, its state.json) to resume from, or (None, None) for a fresh start; a checkpoint made
    with other settings or data is refused, naming what changed."""
    checkpoints = output_dir / CHECKPOINTS
    if not resume and (checkpoints.exists() or (output_dir / ADAPTER).exists()):
        raise SmeltError(f"{output_dir} already holds a training run; pass --resume to continue it, or a new folder")
    checkpoint = latest_checkpoint(checkpoints) if resume else None
    saved = json.loads((checkpoint / "state.json").read_text()) if checkpoint else None
    if saved and saved["fingerprint"] != fingerprint:
        changed = [k for k, v in config.to_dict().items() if saved["config"].get(k) != v]
        what = ", ".join(f"{k}: {saved['config'].get(k)!r} -> {config.to_dict()[k]!r}" for k in changed)
        raise SmeltError(
            f"--resume: the checkpoint {checkpoint} was made with {what or 'different training examples'}; "
            "rerun with the same data and settings, or train into a new output folder"
        )
    return checkpoint, saved

def restore(checkpoint: Path, saved: dict, peft_model, optimizer, scheduler) -> TrainingProgress:
    """The LoRA weights, optimizer, schedule and random state of ``checkpoint``; where training stood."""
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(peft_model, load_file(str(checkpoint / "adapter_model.safetensors")))
    trainer_state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(trainer_state["optimizer"])
    scheduler.load_state_dict(trainer_state["scheduler"])
    _set_rng_state(trainer_state["rng"])
    return TrainingProgress(saved["epoch"], saved["step"], saved["tokens"], saved["seconds"], saved["losses"])

def _rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    random.setstate(tuple(s if not isinstance(s, list) else tuple(s) for s in state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

def fingerprint(config: LoraTrainingConfig, examples: list[SftExample]) -> str:
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for example in examples:
        digest.update(json.dumps([example.prompt_ids, example.completion_ids]).encode())
    return digest.hexdigest()

def latest_checkpoint(checkpoints: Path) -> Path | None:
    complete = [p for p in checkpoints.glob("epoch-*") if (p / "state.json").is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_atomically(save: Callable[[Path], None], target: Path) -> Path:
    """Write a folder under a temporary name, then rename it into place."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    save(partial)
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial, target)
    return target


def save_checkpoint(peft_model, optimizer, scheduler, checkpoints: Path, state: dict) -> Path:
    import torch

    def save(folder: Path) -> None:
        peft_model.save_pretrained(folder)
        trainer_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()}
        torch.save(trainer_state, folder / "trainer_state.pt")
        (folder / "state.json").write_text(json.dumps(state))  # written last: its presence marks a complete save

    checkpoints.mkdir(parents=True, exist_ok=True)
    target = save_atomically(save, checkpoints / f"epoch-{state['epoch']}")
    for older in checkpoints.glob("epoch-*"):
        if older != target:
            shutil.rmtree(older, ignore_errors=True)
    return target


def truncate_log(log_path: Path, step: int) -> None:
    """Keep the log lines up to the checkpoint's step (an interrupted epoch's lines are trained again)."""
    if not log_path.exists():
        return
    kept = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut short by the interruption
            continue
    partial = log_path.with_name(f".{log_path.name}.partial")
    partial.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(partial, log_path)
