"""Choosing the device and dtype for in-process models."""

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


def default_dtype(device: str):
    """bf16 on a GPU that supports it, fp32 elsewhere (CPU bf16 matmuls are slow on most CPUs)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
