"""The knobs of one LoRA distillation run, checked when set, with defaults sized per device.

Most fields map to one ``distill`` option; a bad value raises SmeltError naming that option:

    r -> --lora-r                alpha -> --lora-alpha          dropout -> --lora-dropout
    target_modules -> --target-modules                          learning_rate -> --learning-rate
    epochs -> --epochs           batch_size -> --batch-size     grad_accum -> --grad-accum
    max_length -> --max-length   seed -> --seed                 gradient_checkpointing -> --gradient-checkpointing
    qlora -> --qlora

bf16 (on where CUDA supports it), warmup_ratio, weight_decay and max_grad_norm are set per device or
left at their defaults; library callers can override them like any other field.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

from smelt.errors import SmeltError

ALL_LINEAR = "all-linear"
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class LoraTrainingConfig:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    # module names (matched as name suffixes, like peft) or "all-linear"; a comma-separated string is accepted too
    target_modules: tuple[str, ...] | str = field(default=ATTENTION_PROJECTIONS)
    learning_rate: float = 1e-3
    epochs: int = 2
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    seed: int = 0
    gradient_checkpointing: bool = False
    qlora: bool = False  # 4-bit base weights (bitsandbytes, CUDA only)
    bf16: bool = False  # bf16 autocast (CUDA only); fp32 otherwise
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 turns clipping off

    def __post_init__(self):
        object.__setattr__(self, "target_modules", _normalize_targets(self.target_modules))
        _positive_int("--lora-r", self.r)
        _positive_number("--lora-alpha", self.alpha)
        _fraction("--lora-dropout", self.dropout)
        _positive_number("--learning-rate", self.learning_rate)
        _positive_int("--epochs", self.epochs)
        _positive_int("--batch-size", self.batch_size)
        _positive_int("--grad-accum", self.grad_accum)
        _positive_int("--max-length", self.max_length)
        if self.max_length < 2:
            raise SmeltError("--max-length must be at least 2 (one prompt token and one completion token)")
        if not _is_int(self.seed) or self.seed < 0:
            raise SmeltError(f"--seed must be a non-negative integer (got {self.seed!r})")
        _fraction("--warmup-ratio", self.warmup_ratio)
        _non_negative("--weight-decay", self.weight_decay)
        _non_negative("--max-grad-norm", self.max_grad_norm)
        for option, value in (
            ("--gradient-checkpointing", self.gradient_checkpointing),
            ("--qlora", self.qlora),
            ("--bf16", self.bf16),
        ):
            if not isinstance(value, bool):
                raise SmeltError(f"{option} is a flag: true or false (got {value!r})")

    @property
    def all_linear(self) -> bool:
        return self.target_modules == ALL_LINEAR

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = self.target_modules if self.all_linear else list(self.target_modules)
        return data


# Where CUDA defaults differ from the (CPU) dataclass defaults.
CUDA_DEFAULTS = {"r": 16, "alpha": 32.0, "learning_rate": 3e-4, "epochs": 3, "batch_size": 8, "max_length": 2048,
                 "gradient_checkpointing": True}


def default_config(device: str) -> LoraTrainingConfig:
    """Defaults sized for the device the student trains on.

    CPU (the dataclass defaults): r=8 on the attention projections, batch 4 at up to 1024 tokens
    (doc_qa prompts run 350-650), 2 epochs at lr 1e-3, fp32: a few dozen examples train in minutes on a
    laptop CPU (docs/benchmarks.md).
    CUDA: r=16, batch 8 at up to 2048 tokens, 3 epochs at lr 3e-4, bf16 autocast where supported,
    gradient checkpointing so a 7-8B student fits beside its weights on a 24 GB card.
    """
    if device.startswith("cuda"):
        import torch

        return LoraTrainingConfig(
            **CUDA_DEFAULTS, bf16=bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()))
    return LoraTrainingConfig()


def _normalize_targets(value: Any) -> tuple[str, ...] | str:
    if isinstance(value, str):
        if value.strip().lower() == ALL_LINEAR:
            return ALL_LINEAR
        value = value.split(",")
    try:
        names = tuple(str(name).strip() for name in value)
    except TypeError:
        names = ()
    if not names or not all(names) or not all(name.replace("_", "").replace(".", "").isalnum() for name in names):
        raise SmeltError(
            f"--target-modules {value!r}: give module names such as q_proj,k_proj,v_proj,o_proj, or {ALL_LINEAR}"
        )
    return names


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(option: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise SmeltError(f"{option} must be a positive integer (got {value!r})")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN != NaN


def _positive_number(option: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise SmeltError(f"{option} must be a positive number (got {value!r})")


def _non_negative(option: str, value: Any) -> None:
    if not _is_number(value) or value < 0:
        raise SmeltError(f"{option} must be a number >= 0 (got {value!r})")


def _fraction(option: str, value: Any) -> None:
    if not _is_number(value) or not 0 <= value < 1:
        raise SmeltError(f"{option} must be a number in [0, 1) (got {value!r})")
