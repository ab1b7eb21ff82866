"""The most likely next token without reading the whole fp32 output projection.

On a CPU a decode step of a few rows is bound by memory traffic, and the output projection of a
small model with a big vocabulary is most of it: Gemma 3 270M's 262,144 x 640 fp32 head is 671 MB of
the 1.1 GB a step reads. Greedy decoding needs only the argmax. This reads an int8 copy of the head
(a quarter of the bytes; PyTorch's weight-only int8 kernel), bounds every logit's error, and computes
in fp32 only the logits that could still be the largest.

The bound holds by construction, not by luck. For a row ``w`` of the head, its dequantized int8 copy
``q`` and the hidden state ``h`` (rounded to bf16 as ``g`` for the kernel), the approximate logit differs
from ``w·h`` by at most ``|w - q||h| + |q||h - g|`` (Cauchy-Schwarz), plus the rounding of the kernel's
fp32 sums and of its bf16 output. Every token whose upper bound reaches the best lower bound is a
candidate, and the candidates' exact fp32 logits decide, so the pick is the full projection's argmax
(up to the last-bit rounding by which any two fp32 matrix products of different shapes differ).
"""

_ROWS_MAX = 16  # beyond about 16 rows the int8 kernel is no faster than the fp32 matrix product (2-core CPU)
_CHUNK = 16384  # rows quantized at a time, so that building the copy needs little extra memory


class GreedyHead:
    """An fp32 output projection ``weight`` (vocabulary x hidden) with an int8 copy, for exact greedy picks."""

    def __init__(self, weight):
        import torch

        self.weight = weight.detach()
        vocabulary, width = self.weight.shape
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
        # The kernel sums ``width`` products in fp32 (relative error below width * 2^-24 of the sum of their
        # sizes) and rounds the result to bf16 (relative 2^-9); both are taken twice over, for margin.
        self.sum_rounding = 2 * width * 2.0**-24
        self.output_rounding = 2 * 2.0**-9

    @staticmethod
    def usable(weight) -> bool:
        """Whether the int8 kernel can stand in for this weight: an fp32 matrix on a CPU."""
        import torch

        return (weight is not None and weight.dtype == torch.float32 and weight.device.type == "cpu"
                and hasattr(torch, "_weight_int8pack_mm"))

    def handles(self, rows: int) -> bool:
        return rows <= _ROWS_MAX

    def screen(self, hidden):
        """The int8 logits of ``hidden`` (rows x width) and the radius within which each exact logit lies."""
        import torch

        hidden = hidden.float()
        rounded = hidden.to(torch.bfloat16)
        approx = torch._weight_int8pack_mm(rounded.contiguous(), self.quantized, self.scales).float()
        norm = hidden.norm(dim=1, keepdim=True)
        input_error = (hidden - rounded.float()).norm(dim=1, keepdim=True)
        # |q| varies by under 1% across rows: its largest value keeps this term one number per row.
        radius = approx.abs().mul_(self.output_rounding).addcmul_(norm, self.error)
        radius += (input_error + self.sum_rounding * norm) * self.size_max
        return approx, radius

    def argmax(self, hidden):
        """For each row of ``hidden``, the index of the largest entry of ``hidden @ weight.T``."""
        import torch

        hidden = hidden.float()
        approx, radius = self.screen(hidden)
        chosen = []
        for h, row_approx, row_radius in zip(hidden, approx, radius, strict=True):
            # Any token's exact logit is a floor for the largest; the int8 favourite's is a high one.
            favourite = int(row_approx.argmax())
            floor = self.weight[favourite] @ h
            ids = (row_approx.add_(row_radius) >= floor).nonzero()[:, 0]  # the tokens that could still beat it
            if len(ids) == 1:
                chosen.append(int(ids[0]))
            else:  # ascending ids: argmax keeps the first of equal logits, as over the whole vocabulary
                chosen.append(int(ids[int((self.weight[ids] @ h).argmax())]))
        return torch.tensor(chosen, device=hidden.device)
