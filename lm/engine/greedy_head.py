"""The most likely next token without reading the whole fp32 output projection.

On a CPU a decode step of a few rows is bound by memory traffic, and the output projection of a
small model with a big vocabulary is most of it: Gemma 3 270M's 262,144 x 640 fp32 head is 671 MB of
the 1.1 GB a step reads. Greedy decoding needs only the argmax. This reads an int8 copy of the head
(a quarter of the bytes), bounds every logit's error, and computes in fp32 only the logits that could
still be the largest.

Three kernels screen; the head uses the first of these the machine has:

- int8 x int8 through ``torch._int_mm``, on CPUs with int8 dot-product instructions (VNNI, AMX): the hidden
  state is quantized too, ``h = s*q_h + r`` with a scale per row, and the integer sums are exact. ``r`` is
  coarse (a few hundred candidates per pick where the bf16 screen leaves about ten), but checking a few
  hundred rows in fp32 costs far less than the screen saves. Without those instructions ``torch._int_mm`` is
  a plain loop, 10 to 50 times slower than the fp32 product.
- int8 x int8 through fbgemm (``fbgemm_linear``), PyTorch's x86 quantized-linear library, fast with AVX2 alone
  and exact in its integer sums: each hidden state is divided by its largest entry and the rows quantized to
  one 7-bit grid, ``h = g + r``. A row whose bound still leaves more than a few thousand candidates gets a
  second pass on ``r``. The kernel's exactness is checked once per process (``fbgemm_linear.sums_exactly``).
- bf16 x int8 (``torch._weight_int8pack_mm``, PyTorch's weight-only int8 kernel) elsewhere: the hidden
  state rounded to bf16 as ``g``.

The bound holds by construction, not by luck. For a row ``w`` of the head and its dequantized int8 copy
``q``, the approximate logit differs from ``w·h`` by at most ``|w - q||h|`` plus ``|q||r|`` (int8 x int8)
or ``|q||h - g|`` (fbgemm, bf16 x int8) (Cauchy-Schwarz), plus the rounding of the kernel's and the scaling's
floating-point arithmetic. Every token whose upper bound reaches the best lower bound is a candidate,
and the candidates' exact fp32 logits decide, so the pick is the full projection's argmax (up to the
last-bit rounding by which any two fp32 matrix products of different shapes differ).
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from smelt.lm.engine import fbgemm_linear

KERNELS = ("fbgemm", "int_mm", "int8pack")  # the screening kernels, as ``GreedyHead(kernel=...)`` names them
# Beyond these many rows the screen is no faster than the fp32 matrix product (docs/benchmarks.md).
_ROWS_MAX = {"fbgemm": 64, "int_mm": 64, "int8pack": 16}
# fbgemm: a row with more candidates than this gets a second pass (one more product, for its rows alone), which
# costs less than checking that many rows of the head in fp32.
_CANDIDATES_BEFORE_A_SECOND_PASS = 2048
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


def available_kernels() -> tuple[str, ...]:
    """The screening kernels this machine runs correctly: all but fbgemm where its sums are not exact (not x86)."""
    return tuple(kernel for kernel in KERNELS if kernel != "fbgemm" or fbgemm_linear.sums_exactly())


def default_kernel() -> str:
    """The screening kernel this machine runs: ``torch._int_mm`` where the CPU has int8 dot products (measured
    there), else fbgemm's where its sums are exact (x86), else bf16 x int8."""
    if cpu_has_int8_dot_products():
        return "int_mm"
    return "fbgemm" if "fbgemm" in available_kernels() else "int8pack"


class GreedyHead:
    """An fp32 output projection ``weight`` (vocabulary x hidden) with an int8 copy, for exact greedy picks.

    ``kernel`` (one of ``KERNELS``) chooses the screening kernel; by default the machine's (``default_kernel``)."""

    def __init__(self, weight, kernel: str | None = None):
        import torch

        self.weight = weight.detach()
        vocabulary, width = self.weight.shape
        self.kernel = default_kernel() if kernel is None else kernel
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel {self.kernel!r}: expected one of {', '.join(KERNELS)}")
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
        self.packed = None
        if self.kernel == "fbgemm":  # fbgemm reads its own packed copy: the plain one is not kept
            self.packed, self.quantized = fbgemm_linear.pack(self.quantized, self.scales_fp32), None
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
        return rows <= _ROWS_MAX[self.kernel]

    def screen(self, hidden):
        """The int8 logits of ``hidden`` (rows x width) and the radius within which each exact logit lies."""
        bound = self._screen(hidden.float())
        return bound.approx, bound.radius()

    def _screen(self, hidden) -> "_Bound":
        if self.kernel == "fbgemm":
            return self._screen_fbgemm(hidden)
        # One row: the bf16 kernel reads the same bytes with less work around it (faster: docs/benchmarks.md).
        return self._screen_int8(hidden) if self.kernel == "int_mm" and len(hidden) > 1 else self._screen_bf16(hidden)

    def _screen_fbgemm(self, hidden) -> "_Bound":
        approx, on_grid = self._fbgemm_pass(hidden)
        rest = (hidden.double() - on_grid).norm(dim=1).float()  # |r|
        # The integer sums are exact; the kernel's fp32 result rounds them and their two scales, and the peak's
        # product rounds once more: at most 2^-22 of |g| |q| (Cauchy-Schwarz, as for int8 x int8). The values the
        # kernel is handed differ from the grid by 2^-24 of it: 2^-20 of |g| per unit of |q| covers all, with room.
        per_row = (rest * (1 + 1e-3) + 2.0**-20 * on_grid.norm(dim=1).float()) * self.size_max
        return _Bound(approx, 0.0, hidden.norm(dim=1), self.error, per_row, on_grid)

    def _fbgemm_pass(self, rows):
        """fbgemm's products of ``rows`` (fp32) and the int8 head, and what it multiplied (``g``, fp64)."""
        import torch

        # The kernel takes one grid for all rows: each row divided by its largest entry first, so that every row
        # spans the grid (a row of large values would otherwise set a grid too coarse for the others).
        peaks = rows.abs().amax(dim=1, keepdim=True)
        peaks = torch.where(peaks > 0, peaks, 1.0)
        grid = fbgemm_linear.on_grid(rows / peaks)
        return fbgemm_linear.product(grid, self.packed).mul_(peaks), grid.exact * peaks.double()

    def _refine(self, bound: "_Bound", hidden, rows) -> None:
        """Narrow ``bound`` for these rows: a second pass multiplies what the first left out (``r``, on a grid of its
        own), so their hidden states are held to 14 bits instead of 7."""
        first = bound.on_grid[rows]
        rest = hidden[rows].double() - first
        approx, second = self._fbgemm_pass(rest.float())
        left = (rest - second).norm(dim=1).float()
        # Each pass's fp32 result is within 2^-22 of its |g| |q|, and adding the two rounds by 2^-24 of their sum.
        rounding = 2.0**-20 * (first.norm(dim=1) + second.norm(dim=1)).float()
        bound.approx[rows] += approx
        bound.on_grid[rows] = first + second
        bound.per_row[rows] = (left * (1 + 1e-3) + rounding) * self.size_max

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

    def argmax(self, hidden, allowed=None):
        """For each row of ``hidden``, the index of the largest entry of ``hidden @ weight.T``; with ``allowed`` (a
        rows x vocabulary boolean mask, each row allowing at least one token), the largest allowed entry: the screen's
        disallowed entries never become candidates, so a constrained row's pick is as exact as a free one's."""
        import torch

        hidden = hidden.float()
        bound = self._screen(hidden)
        if allowed is not None:
            bound.approx.masked_fill_(~allowed, float("-inf"))
        # Any token's exact logit is a floor for the largest; the screen's favourite's is a high one.
        favourites = bound.approx.argmax(dim=1)
        floors = torch.stack([self.weight[f] @ h for f, h in zip(favourites.tolist(), hidden, strict=True)])
        rows, ids = bound.could_reach(floors)  # the tokens that could still beat it, ascending ids per row
        if bound.on_grid is not None:  # fbgemm's 7 bits: rows with too many candidates get a second pass
            hard = (rows.bincount(minlength=len(hidden)) > _CANDIDATES_BEFORE_A_SECOND_PASS).nonzero()[:, 0]
            if len(hard):
                self._refine(bound, hidden, hard)
                rows, ids = bound.could_reach(floors)
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
    on_grid: Any = None  # fbgemm: the hidden states as the kernel multiplied them (fp64), for a second pass

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
