"""Plots as inline SVG, drawn by hand: schedule curves and bar charts, sharp at any zoom, no plotting library.

Each plot is an ``<svg class="plot">`` carrying its values in ``data-values`` (JSON, downsampled for long jobs) so
the report's script can show the value under the pointer; the page works without the script too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape

import numpy as np

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
              height: int = HEIGHT, step: bool = False) -> str:
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
    parts = [f'<svg class="plot" id="plot-{escape(name)}" data-name="{escape(name)}" data-frames="{frames}" '
             f'data-left="{LEFT}" data-right="{RIGHT}" data-top="{TOP}" data-bottom="{BOTTOM}" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title or name)}" xmlns="http://www.w3.org/2000/svg">',
             f'<text class="title" x="{LEFT}" y="15">{escape(title or name)}</text>',
             f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>']
    # Horizontal grid: the data's min, max and middle, labelled with the real values.
    data_lo, data_hi = float(values.min()), float(values.max())
    middle = (data_lo + data_hi) / 2
    levels = [data_lo] if data_hi == data_lo else [data_lo, data_hi]
    if data_hi != data_lo and not (step and middle != int(middle)):  # integer series: no "1239.5" label
        levels.insert(1, middle)
    for level in levels:
        y = sy(level)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}"/>')
        parts.append(f'<text class="ylabel" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{number(level)}</text>')
    # Vertical ticks on whole frames, 1-2-5 spaced.
    tick = max(1, int(nice_step(max(1, frames - 1))))
    for frame in range(0, frames, tick):
        x = sx(frame)
        parts.append(f'<line class="tick" x1="{x:.1f}" y1="{TOP + plot_h}" x2="{x:.1f}" y2="{TOP + plot_h + 4}"/>')
        parts.append(f'<text class="xlabel" x="{x:.1f}" y="{height - 6}" text-anchor="middle">{frame}</text>')
    if fps:
        parts.append(f'<text class="xlabel" x="{LEFT + plot_w}" y="{height - 6}" text-anchor="end">'
                     f'{frames / fps:.2f} s</text>')
    for frame, label in markers:
        if 0 < frame < frames:
            x = sx(frame)
            parts.append(f'<line class="marker" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}">'
                         f'<title>{escape(label)}</title></line>')
    if frames == 1:
        parts.append(f'<circle class="dot" cx="{sx(0):.1f}" cy="{sy(values[0]):.1f}" r="3" fill="{colour}"/>')
    else:
        parts.append(f'<polyline class="curve" fill="none" stroke="{colour}" points="{path}"/>')
    parts.append(f'<line class="cursor" x1="0" y1="{TOP}" x2="0" y2="{TOP + plot_h}" visibility="hidden"/>')
    parts.append(f'<text class="readout" x="{LEFT + plot_w}" y="15" text-anchor="end"></text>')
    parts.append("</svg>")
    hover = values if frames <= MAX_HOVER_VALUES else values[np.linspace(0, frames - 1, MAX_HOVER_VALUES).astype(int)]
    data = json.dumps([float(f"{v:.6g}") for v in hover.tolist()], separators=(",", ":"))
    parts[0] = parts[0][:-1] + f" data-values='{escape(data, quote=True)}'>"
    return "".join(parts)


def bar_chart(values: Sequence[float], labels: Sequence[str], *, name: str, title: str, unit: str = "s",
              colour: str = PALETTE[3], width: int = WIDTH, height: int = HEIGHT) -> str:
    """One bar per item (chunk timings), labelled below when they fit."""
    values = np.asarray(values, dtype=np.float64)
    count = max(1, values.size)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    top = float(values.max()) if values.size and values.max() > 0 else 1.0
    slot = plot_w / count
    gap = min(4.0, slot * 0.2)
    parts = [f'<svg class="plot bars" id="plot-{escape(name)}" data-name="{escape(name)}" data-bars="{values.size}" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<text class="title" x="{LEFT}" y="15">{escape(title)}</text>',
             f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>']
    for level in (0.0, top / 2, top):
        y = TOP + plot_h - level / top * plot_h
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}"/>')
        parts.append(f'<text class="ylabel" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{number(level)} {unit}</text>')
    every = max(1, math.ceil(count / 16))
    for i, (value, label) in enumerate(zip(values.tolist(), labels)):
        h = value / top * plot_h
        x = LEFT + i * slot + gap / 2
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(1.0, slot - gap):.1f}" '
                     f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {number(value)} {unit}</title></rect>')
        if i % every == 0:
            parts.append(f'<text class="xlabel" x="{x + (slot - gap) / 2:.1f}" y="{height - 6}" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
