"""Plots as inline SVG, drawn by hand: schedule curves and bar charts, sharp at any zoom, no plotting library.

This module works out the geometry; ``templates/line_plot.svg.j2`` and ``bar_chart.svg.j2`` write the elements
(autoescaped, as the page: a schedule name or a prompt in a marker's tooltip is text).

Each plot is an ``<svg class="plot">`` carrying its values in ``data-values`` (JSON, downsampled for long jobs) so
the report's script can show the value under the pointer; the page works without the script too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
from markupsafe import Markup

from framefarm.report.templating import render

WIDTH = 640
HEIGHT = 170
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 22, 24  # margins: y labels, breathing room, title, x labels
MAX_POINTS = 1200  # polyline points per plot: about two per pixel column
MAX_HOVER_VALUES = 4000  # values kept for the pointer read-out
PALETTE = ("#4cc9f0", "#f72585", "#b5e48c", "#ffb703", "#9d4edd", "#06d6a0", "#ef476f", "#8ecae6")


def number(value: float) -> str:
    """A short, exact-looking label: ``1.04``, ``-0.6``, ``1234``, ``2.5e-05``."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    magnitude = abs(value)
    if magnitude >= 1e6 or magnitude < 1e-3:
        return f"{value:.3g}"
    return f"{value:.6g}" if magnitude >= 1 else f"{value:.4g}"


def nice_step(span: float, target: int = 6) -> float:
    """A 1-2-5 step that cuts ``span`` into about ``target`` parts."""
    if span <= 0:
        return 1.0
    raw = span / target
    base = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * base:
            return multiple * base
    return 10 * base


def _envelope(values: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Downsample to about ``points`` (x, y) pairs keeping each bucket's minimum and maximum, so no peak is lost."""
    n = values.size
    if n <= points:
        return np.arange(n, dtype=np.float64), values
    buckets = points // 2
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    xs, ys = [], []
    for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
        chunk = values[a:b]
        lo, hi = int(np.argmin(chunk)), int(np.argmax(chunk))
        for k in sorted({lo, hi}):
            xs.append(a + k)
            ys.append(chunk[k])
    return np.asarray(xs, np.float64), np.asarray(ys, np.float64)


def _y_range(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = abs(hi) * 0.05 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def line_plot(values: Sequence[float] | np.ndarray, *, name: str, title: str | None = None, fps: float | None = None,
              markers: Sequence[tuple[int, str]] = (), colour: str = PALETTE[0], width: int = WIDTH,
              height: int = HEIGHT, step: bool = False) -> Markup:
    """One schedule (or any per-frame series) as an SVG line plot.

    Args:
        values: one value per frame.
        name: machine name (``data-name``; also the plot's id suffix).
        title: shown above the plot (defaults to ``name``).
        fps: when given, the x axis also says seconds at its last tick.
        markers: ``(frame, label)`` pairs drawn as dashed vertical lines (prompt changes).
        colour: the curve's colour.
        step: draw steps (integer series: seeds, steps) instead of straight segments.
    """
    values = np.asarray(values, dtype=np.float64)
    frames = values.size
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    lo, hi = _y_range(values)

    def sx(frame: float) -> float:
        return LEFT + (frame / max(1, frames - 1)) * plot_w

    def sy(value: float) -> float:
        return TOP + (hi - value) / (hi - lo) * plot_h

    xs, ys = _envelope(values, MAX_POINTS)
    if step and xs.size > 1:
        xs = np.repeat(xs, 2)[1:]
        ys = np.repeat(ys, 2)[:-1]
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs.tolist(), ys.tolist()))
    # Horizontal grid: the data's min, max and middle, labelled with the real values.
    data_lo, data_hi = float(values.min()), float(values.max())
    middle = (data_lo + data_hi) / 2
    levels = [data_lo] if data_hi == data_lo else [data_lo, data_hi]
    if data_hi != data_lo and not (step and middle != int(middle)):  # integer series: no "1239.5" label
        levels.insert(1, middle)
    # Vertical ticks on whole frames, 1-2-5 spaced.
    tick = max(1, int(nice_step(max(1, frames - 1))))
    hover = values if frames <= MAX_HOVER_VALUES else values[np.linspace(0, frames - 1, MAX_HOVER_VALUES).astype(int)]
    return render(
        "line_plot.svg.j2", name=name, title=title or name, frames=frames, width=width, height=height,
        left=LEFT, right=RIGHT, top=TOP, bottom=BOTTOM, plot_w=plot_w, plot_h=plot_h, colour=colour,
        levels=[(f"{sy(level):.1f}", f"{sy(level) + 4:.1f}", number(level)) for level in levels],
        ticks=[(f"{sx(frame):.1f}", frame) for frame in range(0, frames, tick)],
        seconds=f"{frames / fps:.2f} s" if fps else None,
        markers=[(f"{sx(frame):.1f}", label) for frame, label in markers if 0 < frame < frames],
        dot=(f"{sx(0):.1f}", f"{sy(values[0]):.1f}") if frames == 1 else None, path=path,
        values=json.dumps([float(f"{v:.6g}") for v in hover.tolist()], separators=(",", ":")),
    )


def bar_chart(values: Sequence[float], labels: Sequence[str], *, name: str, title: str, unit: str = "s",
              colour: str = PALETTE[3], width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """One bar per item (chunk timings), labelled below when they fit."""
    values = np.asarray(values, dtype=np.float64)
    count = max(1, values.size)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    top = float(values.max()) if values.size and values.max() > 0 else 1.0
    slot = plot_w / count
    gap = min(4.0, slot * 0.2)
    every = max(1, math.ceil(count / 16))
    bars = []
    for i, (value, label) in enumerate(zip(values.tolist(), labels)):
        h = value / top * plot_h
        x = LEFT + i * slot + gap / 2
        bars.append({"x": f"{x:.1f}", "y": f"{TOP + plot_h - h:.1f}", "width": f"{max(1.0, slot - gap):.1f}",
                     "height": f"{h:.1f}", "tip": f"{label}: {number(value)} {unit}",
                     "label": label if i % every == 0 else None, "label_x": f"{x + (slot - gap) / 2:.1f}"})
    levels = [(f"{TOP + plot_h - level / top * plot_h:.1f}", f"{TOP + plot_h - level / top * plot_h + 4:.1f}",
               f"{number(level)} {unit}") for level in (0.0, top / 2, top)]
    return render("bar_chart.svg.j2", name=name, title=title, count=values.size, width=width, height=height,
                  left=LEFT, top=TOP, plot_w=plot_w, plot_h=plot_h, colour=colour, levels=levels, bars=bars)
