"""The charts of report.html, drawn with matplotlib (Agg, no display) and returned as PNG bytes.

Each function takes plain numbers and labels, so the report decides what is measured and these only draw.
Labels are expected in Latin script: the default matplotlib fonts have no Japanese glyphs.
"""

from __future__ import annotations

import base64
import io
import math
import os

_COLORS = ["#8c8c8c", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#e377c2"]


def _pyplot():
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """An <img src> holding the PNG itself: the report needs no file beside it and no network."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def color(index: int) -> str:
    return _COLORS[index % len(_COLORS)]


def language_bars(programs: list[str], languages: list[str], values: list[list[float | None]],
                  counts: list[list[int]], *, ylabel: str = "score") -> bytes:
    """Grouped bars: one group per language, one bar per program (in order: baseline -> compiled -> distilled).

    ``values[p][l]`` is program p's mean score on language l (None: no example), ``counts[p][l]`` its examples."""
    plt = _pyplot()
    width = 0.8 / max(1, len(programs))
    figure, axes = plt.subplots(figsize=(min(12.0, 2.5 + 2.2 * len(languages)), 3.6))
    top = max([v for row in values for v in row if v is not None] + [1.0])
    for p, name in enumerate(programs):
        xs = [l_index + (p - (len(programs) - 1) / 2) * width for l_index in range(len(languages))]
        heights = [v if v is not None else 0.0 for v in values[p]]
        bars = axes.bar(xs, heights, width * 0.92, label=name, color=color(p))
        for bar, value, n in zip(bars, values[p], counts[p], strict=True):
            text = "-" if value is None else f"{value:.2f}"
            axes.annotate(f"{text}\nn={n}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(languages)), languages)
    axes.set_ylim(0, top * 1.25)
    axes.set_ylabel(ylabel)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return _png(figure)


def radar(programs: list[str], axis_names: list[str], values: list[list[float]]) -> bytes:
    """One polygon per program over the axes, each value in 0..1 (bigger is better on every axis)."""
    plt = _pyplot()
    count = len(axis_names)
    angles = [2 * math.pi * i / count for i in range(count)]
    figure = plt.figure(figsize=(6.4, 4.8))
    axes = figure.add_subplot(projection="polar")
    axes.set_theta_offset(math.pi / 2)
    axes.set_theta_direction(-1)
    for p, name in enumerate(programs):
        row = [min(1.0, max(0.0, v)) for v in values[p]]
        axes.plot([*angles, angles[0]], [*row, row[0]], color=color(p), linewidth=1.8, label=name)
        axes.fill([*angles, angles[0]], [*row, row[0]], color=color(p), alpha=0.10)
    axes.set_xticks(angles, axis_names, fontsize=9)
    axes.set_ylim(0, 1)
    axes.set_yticks([0.25, 0.5, 0.75, 1.0], ["0.25", "0.5", "0.75", "1"], fontsize=7, color="#666666")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.12, 1.08), frameon=False)
    return _png(figure)
