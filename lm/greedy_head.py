"""The most likely next token without reading the whole fp32 output projection.

On a CPU a decode step of a few rows is bound by memory traffic, and the output projection of a
small model with a big vocabulary is most of it: Gemma 3 270M's 262,144 x 640 fp32 head is 671 MB of
the 1.1 GB a step reads. Greedy decoding needs only the argmax. This reads an int8 copy of the head
(a quarter of the bytes), bounds every logit's error, and computes in fp32 only the logits that could
still be the largest.

Two kernels screen, whichever the CPU runs faster:

- int8 x int8 (``torch._int_mm``), on CPUs with int8 dot-product instructions (VNNI, AMX): the hidden
  state is quantized too, ``h = s*q_h + r`` with a scale per row, and the integer sums are exact. ``r`` is
  coarse (a few hundred candidates per pick where the bf16 screen leaves about ten), but checking a few
  hundred rows in fp32 costs far less than the screen saves.
- bf16 x int8 (``torch._weight_int8pack_mm``, PyTorch's weight-only int8 kernel) elsewhere: the hidden
  state rounded to bf16 as ``g``.

The bound holds by construction, not by luck. For a row ``w`` of the head and its dequantized int8 copy
``q``, the approximate logit differs from ``w·h`` by at most ``|w - q||h|`` plus ``|q||r|`` (int8 x int8)
or ``|q||h - g|`` (bf16 x int8) (Cauchy-Schwarz), plus the rounding of the kernel's and the scaling's
floating-point arithmetic. Every token whose upper bound reaches the best lower bound is a candidate,
and the candidates' exact fp32 logits decide, so the pick is the full projection's argmax (up to the
last-bit rounding by which any two fp32 matrix products of different shapes differ).
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# Beyond these many rows the screen is no faster than the fp32 matrix product (docs/benchmarks.md).
_ROWS_MAX_INT8_PRODUCTS = 64
_ROWS_MAX_BF16_PRODUCTS = 16
_CHUNK = 16384  # rows quantized at a time, so that building the copy needs little extra memory
_INT8_DOT_PRODUCT_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


@cache
def cpu_has_int8_dot_products() -> bool:
    """Whether this CPU multiplies int8 vectors natively (x86 VNNI or AMX), read from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.partition(":")[2].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool(_INT8_DOT_PRODUCT_FLAGS & set(flags))


class GreedyHead:
    """An fp32 output projection ``weight`` (vocabulary x hidden) with an int8 copy, for exact greedy picks.

    ``int8_products`` chooses the screening kernel (default: int8 x int8 where the CPU has int8 dot products)."""

    def __init__(self, weight, int8_products: bool | None = None):
        import torch

        self.weight = weight.detach()
        vocabulary, width = self.weight.shape
        self.int8_products = cpu_has_int8_dot_products() if int8_products is None else int8_products
        self.quantized = torch.empty((vocabulary, width), dtype=torch.int8)
        self.scales = torch.empty(vocabulary, dtype=torch.bfloat16)
        self.error = torch.empty(vocabulary)  # |w - q| per row
        self.size_max = 0.0  # the largest |q|
        with torch.no_grad():
            for start in range(0, vocabulary, _CHUNK):
                rows = self.weight[start : start + _CHUNK].float()
                scales = (rows.abs().amax(dim=1) / 127).to(torch.bfloat16).float()
                scales = torch.where(scales > 0, scales, 1.0)
                quantized = torch.round(rows / scales[:, None]).clamp(-127, 127)
                dequantized = quantized * scales[:, None]
                self.quantized[start : start + _CHUNK] = quantized.to(torch.int8)
                self.scales[start : start + _CHUNK] = scales.to(torch.bfloat16)  # exact: they are bf16 values
                # fp32 norms are within 1e-5 relative here; the margin covers that
                self.error[start : start + _CHUNK] = (rows - dequantized).norm(dim=1) * (1 + 1e-3)
                self.size_max = max(self.size_max, float(dequantized.norm(dim=1).max()) * (1 + 1e-3))
        self.scales_fp32 = self.scales.float()
        # bf16 x int8: the kernel sums ``width`` products in fp32 (relative error below width * 2^-24 of the
        # sum of their sizes) and rounds the result to bf16 (relative 2^-9); both are taken twice over, for margin.
        self.sum_rounding = 2 * width * 2.0**-24
        self.output_rounding = 2 * 2.0**-9

    @staticmethod
    def usable(weight) -> bool:
        """Whether an int8 kernel can stand in for this weight: an fp32 matrix on a CPU."""
        import torch

        return (weight is not None and weight.dtype == torch.float32 and weight.device.type == "cpu"
                and hasattr(torch, "_weight_int8pack_mm") and hasattr(torch, "_int_mm"))

    def handles(self, rows: int) -> bool:
        return rows <= (_ROWS_MAX_INT8_PRODUCTS if self.int8_products else _ROWS_MAX_BF16_PRODUCTS)

    def screen(self, hidden):
        """The int8 logits of ``hidden`` (rows x width) and the radius within which each exact logit lies."""
        bound = self._screen(hidden.float())
        return bound.approx, bound.radius()

    def _screen(self, hidden) -> "_Bound":
        # One row: the bf16 kernel reads the same bytes with less work around it (faster: docs/benchmarks.md).
        return self._screen_int8(hidden) if self.int8_products and len(hidden) > 1 else self._screen_bf16(hidden)

    def _screen_int8(self, hidden) -> "_Bound":
        import torch

        scale = hidden.abs().amax(dim=1, keepdim=True) / 127
        scale = torch.where(scale > 0, scale, 1.0)
        quantized = torch.round(hidden / scale).clamp_(-127, 127)
        rest = (hidden.double() - quantized.double() * scale.double()).norm(dim=1).float()  # |r|, in fp64
        approx = torch._int_mm(quantized.to(torch.int8), self.quantized.t()).float().mul_(scale).mul_(self.scales_fp32)
        # The integer sums are exact; turning them into fp32 (where they pass 2^24), scaling by ``scale`` and by
        # the row's scale each round by at most 2^-24 of a term no larger than |s q_h| |q| (Cauchy-Schwarz):
        # 2^-20 of |s q_h| per unit of |q| is that, five times over.
        per_row = (rest * (1 + 1e-3) + 2.0**-20 * scale[:, 0] * quantized.norm(dim=1)) * self.size_max
        return _Bound(approx, 0.0, hidden.norm(dim=1), self.error, per_row)

    def _screen_bf16(self, hidden) -> "_Bound":
        import torch

        rounded = hidden.to(torch.bfloat16)
        approx = torch._weight_int8pack_mm(rounded.contiguous(), self.quantized, self.scales).float()
        norm = hidden.norm(dim=1)
        input_error = (hidden - rounded.float()).norm(dim=1)
        # |q| varies by under 1% across rows: its largest value keeps this term one number per row.
        per_row = (input_error + self.sum_rounding * norm) * self.size_max
        return _Bound(approx, self.output_rounding, norm, self.error, per_row)

    def argmax(self, hidden):
        """For each row of ``hidden``, the index of the largest entry of ``hidden @ weight.T``."""
        import torch

        hidden = hidden.float()
        bound = self._screen(hidden)
        # Any token's exact logit is a floor for the largest; the screen's favourite's is a high one.
        favourites = bound.approx.argmax(dim=1)
        floors = torch.stack([self.weight[f] @ h for f, h in zip(favourites.tolist(), hidden, strict=True)])
        rows, ids = bound.could_reach(floors)  # the tokens that could still beat it, ascending ids per row
        chosen = []
        for h, row_ids in zip(hidden, ids.split(rows.bincount(minlength=len(hidden)).tolist()), strict=True):
            if len(row_ids) == 1:
                chosen.append(int(row_ids[0]))
            else:  # ascending ids: argmax keeps the first of equal logits, as over the whole vocabulary
                chosen.append(int(row_ids[int((self.weight.index_select(0, row_ids) @ h).argmax())]))
        return torch.tensor(chosen, device=hidden.device)


@dataclass
class _Bound:
    """Approximate logits (rows x vocabulary) whose exact values lie within
    ``|approx| * relative + norm[row] * error[token] + per_row[row]``: kept in parts, so that finding the tokens
    that could reach a floor needs one comparison over the whole array, not the whole radius."""

    approx: Any
    relative: float
    norm: Any
    error: Any
    per_row: Any

    def radius(self):
        radius = self.approx.abs().mul_(self.relative) if self.relative else self.approx.new_zeros(())
        return radius + self.norm[:, None] * self.error + self.per_row[:, None]

    def could_reach(self, floors):
        """(rows, ids) of every entry whose upper bound reaches its row's floor, in row then id order."""
        import torch

        # A cheap superset first, one comparison per entry: with every token's error at the largest,
        # approx + |approx| * relative >= room, which holds only where approx >= threshold (a hair lower, for
        # the rounding of this arithmetic); then the exact rule on those few.
        room = floors - self.per_row - self.norm * self.error.max()
        threshold = torch.where(room >= 0, room / (1 + self.relative), room / (1 - self.relative))
        threshold -= threshold.abs() * 1e-5 + 1e-30
        rows, ids = (self.approx >= threshold[:, None]).nonzero(as_tuple=True)
        values = self.approx[rows, ids]
        reach = values + values.abs() * self.relative + self.norm[rows] * self.error[ids] + self.per_row[rows]
        keep = reach >= floors[rows]
        return rows[keep], ids[keep]
