"""int8 x int8 products through fbgemm, PyTorch's x86 quantized-linear library, with exact integer sums.

``torch._int_mm`` is fast only where the CPU has int8 dot-product instructions (VNNI, AMX); without them (an
AVX2-only CPU) it falls back to a plain loop, and the bf16 x int8 kernel computes in floating point, as slowly
as the fp32 product once a step has a dozen rows. fbgemm multiplies uint8 activations by int8 weights with
AVX2's ``vpmaddubsw`` too, which adds two products into a saturating 16-bit sum: with activations of 7 bits
(0..127) and weights in -127..127 a pair sums to at most 32,258 and never saturates, so every integer sum is
exact, as ``torch._int_mm``'s are.

The activations are quantized for the kernel here, not by it: one scale and zero point for all rows, and the
values handed over already on that grid, so the kernel's own rounding gives back exactly the integers chosen
here, and the caller knows the quantized vector it multiplied (``on_grid``) to bound the error.

``torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32`` takes those activations, the per-channel
int8 weight packed once, and returns ``scale * weight_scale[j] * sum`` in fp32. The exactness is checked once
per process on extreme values (``sums_exactly``) before the greedy head relies on it; where the op is missing
or the check fails, the greedy head screens with one of its other kernels.
"""

import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

_ACTIVATION_MAX = 127  # 7-bit activations: a pair of products fits vpmaddubsw's 16-bit sum


@dataclass
class OnGrid:
    """Rows quantized to one grid for the kernel: ``values`` (fp32, exactly on the grid as the kernel reads it),
    ``exact`` (the same in fp64: ``(q - zero_point) * scale`` with no rounding), its scale and zero point."""

    values: Any
    exact: Any
    scale: float
    zero_point: int


def pack(quantized, scales):
    """fbgemm's packed form of an int8 matrix (rows x width) with one fp32 scale per row: what ``product`` takes."""
    import torch

    zero_points = torch.zeros(len(quantized), dtype=torch.long)
    with warnings.catch_warnings():  # PyTorch marks quantized tensors as deprecated: the check below stands guard
        warnings.simplefilter("ignore")
        weight = torch._make_per_channel_quantized_tensor(quantized, scales.double(), zero_points, 0)
        return torch.ops.quantized.linear_prepack(weight, None)


def on_grid(rows) -> OnGrid:
    """``rows`` (fp32) rounded to the 7-bit grid that spans their smallest and largest value (and zero)."""
    import torch

    low, high = min(float(rows.min()), 0.0), max(float(rows.max()), 0.0)
    scale = float(torch.tensor((high - low) / _ACTIVATION_MAX, dtype=torch.float32)) or 1.0  # an fp32 value
    zero_point = min(max(round(-low / scale), 0), _ACTIVATION_MAX)
    levels = torch.round(rows / scale).add_(zero_point).clamp_(0, _ACTIVATION_MAX).sub_(zero_point)
    return OnGrid(levels * scale, levels.double() * scale, scale, zero_point)


def product(grid: OnGrid, packed):
    """``grid.exact @ (scales * quantized).T``, the integer sums exact, rounded to fp32 (rows x packed rows)."""
    import torch

    return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(grid.values, grid.scale,
                                                                               grid.zero_point, packed)


@cache
def sums_exactly() -> bool:
    """Whether this PyTorch has fbgemm's int8 linear and its sums come out exact on the values most likely to
    overflow a 16-bit sum (activations at 0 and 127, weights at -127 and 127), within fp32's rounding of the result."""
    try:
        import torch

        if "fbgemm" not in torch.backends.quantized.supported_engines:
            return False
        generator = torch.Generator().manual_seed(0)
        quantized = torch.randint(-127, 128, (512, 256), generator=generator, dtype=torch.int8)
        quantized[:64] = 127
        quantized[64:128] = -127
        scales = torch.rand(512, generator=generator) * 0.01 + 1e-3
        rows = torch.randn(16, 256, generator=generator)
        rows[0], rows[1] = rows.max(), rows.min()  # levels all at 127, all at 0
        grid = on_grid(rows)
        result = product(grid, pack(quantized, scales)).double()
        weights = quantized.double() * scales.double()[:, None]
        exact = grid.exact @ weights.T
        rounding = 2.0**-21 * grid.exact.norm(dim=1)[:, None] * weights.norm(dim=1)[None]
        return bool(((result - exact).abs() <= rounding).all())
    except (RuntimeError, AttributeError, TypeError):  # the op or quantized tensors are gone from this PyTorch
        return False
