"""Choosing the device and dtype for in-process models."""

import os

from smelt.errors import SmeltError


def resolve_device(requested: str = "auto") -> str:
    """Turn --device (auto, cpu, cuda, cuda:N, mps) into a torch device string, or explain why not."""
    import torch

    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SmeltError(
                f"--device {requested}: no CUDA GPU is visible to torch (torch.cuda.is_available() is False); "
                "use --device cpu, or install a CUDA build of torch on a GPU machine"
            )
        index = requested.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise SmeltError(
                f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                "use cuda:0 .. cuda:N-1"
            )
        return requested
    if requested == "mps":
        if not torch.backends.mps.is_available():
            raise SmeltError("--device mps: Apple MPS is not available here; use --device cpu")
        return "mps"
    raise SmeltError(f"--device {requested!r} is not a device; use auto, cpu, cuda, cuda:N or mps")


CPU_DTYPES = ("float32", "bfloat16")


def cuda_bf16_native(device: str = "cuda") -> bool:
    """Whether this CUDA device computes in bf16 natively: compute capability 8.0 (Ampere) or newer, or ROCm.

    ``torch.cuda.is_bf16_supported()`` also answers yes where bf16 is only emulated (a T4 or a V100), where it runs
    slower than fp32; and it asks about the current device, not necessarily this one."""
    import torch

    if not torch.cuda.is_available():
        return False
    if torch.version.hip:
        return True
    index = torch.device(device).index
    major, _ = torch.cuda.get_device_capability(torch.cuda.current_device() if index is None else index)
    return major >= 8


def default_dtype(device: str):
    """bf16 on a GPU that computes in it natively (fp32 on older ones: no fp16, which overflows in some models,
    Gemma 3 among them); on a CPU fp32, unless ``SMELT_CPU_DTYPE=bfloat16``.

    On a CPU with native bf16 instructions bf16 roughly halves the work (docs/benchmarks.md),
    but its answers then depend on how requests happen to be batched (rounding changes with the
    batch's shape): two identical compile runs differed in a few answers, while fp32 repeated
    them exactly. Comparisons come first, so fp32 is the CPU default and bf16 is a choice.
    CPUs without native bf16 instructions (AVX512-BF16, AMX) emulate it and run slower than fp32.
    """
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if cuda_bf16_native(device) else torch.float32
    if device != "cpu":
        return torch.float32
    choice = os.environ.get("SMELT_CPU_DTYPE", "float32").strip().lower() or "float32"
    if choice not in CPU_DTYPES:
        raise SmeltError(f"SMELT_CPU_DTYPE={choice}: use one of {', '.join(CPU_DTYPES)}")
    return getattr(torch, choice)
