"""The markdown summary a finished render leaves in Prefect (an artifact): what a farm manager checks the next
morning without opening the frames — how many frames, how long, which seeds and model files, which worker did
what, and links to the outputs.

Pure text building (no Prefect), so it can be tested and reused by other front-ends.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# A 10 000-frame job has ~40 chunks; a table much longer than this is not read, only scrolled.
MAX_CHUNK_ROWS = 100


def link(location: str) -> str:
    """A clickable URL for a local path (``file://``) or a store URL (``s3://…``) as it is."""
    if "://" in location:
        return location
    return Path(os.path.abspath(location)).as_uri()


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def summary_markdown(plan: Any, job: Any, chunks: Sequence[Any], *, video: str, store_dir: str,
                     report: str | None = None, models: Mapping[str, str] | None = None,
                     seconds: float | None = None) -> str:
    """Markdown for a finished render.

    Args:
        plan: the ``RenderPlan`` rendered.
        job: the validated job spec.
        chunks: the ``ChunkResult`` of every chunk (rendered now or found done).
        video: path or URL of the finished video.
        store_dir: the job's folder in the store (path or URL), for the frames and manifest links.
        report: path of report.html, when written.
        models: model short hashes by role (``{"checkpoint": "6ce0161689"}``); none for the preview renderer.
        seconds: wall time of the whole flow run.
    """
    ordered = sorted(chunks, key=lambda c: c.index)
    rendered = sum(len(c.rendered) for c in ordered)
    render_s = sum(c.seconds for c in ordered)
    # 1. Headline and totals.
    lines = [f"# {plan.job}", "",
             f"{job.kind} · `{plan.renderer}` · {plan.frames} frames at {plan.width}×{plan.height}, {plan.fps:g} fps",
             "", "| | |", "|---|---|",
             f"| frames | {rendered} rendered now, {plan.frames - rendered} reused (already in the store) |",
             f"| chunks | {len(plan.chunks)} of {plan.chunk_size} frames |"]
    timing = f"rendering {_seconds(render_s)} in chunks"
    if rendered:
        timing += f" ({render_s / rendered:.3f} s/frame)"
    if seconds is not None:
        timing = f"wall {_seconds(seconds)}; " + timing
    if ordered:
        slowest = max(ordered, key=lambda c: c.seconds)
        timing += f"; slowest chunk {slowest.index} ({_seconds(slowest.seconds)} on {slowest.worker or '?'})"
    lines.append(f"| time | {timing} |")
    # 2. What determines the pixels: seeds and model files.
    first, last = plan.chunks[0].seeds[0], plan.chunks[-1].seeds[-1]
    lines.append(f"| seeds | job seed {plan.seed}, behaviour `{job.seeds.behavior}`;"
                 f" frame 0 → {first}, frame {plan.frames - 1} → {last} (per frame in manifest.json) |")
    if models:
        lines.append("| models | " + ", ".join(f"{role} `{short}`" for role, short in sorted(models.items())) + " |")
    workers = sorted({c.worker for c in ordered if c.worker})
    if workers:
        lines.append(f"| workers | {', '.join(workers)} |")
    # 3. Where the outputs are.
    outputs = [f"[video]({link(video)})"]
    if report:
        outputs.append(f"[report.html]({link(report)})")
    outputs += [f"[manifest.json]({link(posixpath.join(store_dir, 'manifest.json'))})",
                f"[frames/]({link(posixpath.join(store_dir, 'frames'))})"]
    lines.append(f"| outputs | {' · '.join(outputs)} |")
    # 4. One row per chunk: where time went and which worker to suspect.
    lines += ["", "| chunk | frames | seeds | rendered | reused | time | worker | GPU |",
              "|---:|---|---|---:|---:|---:|---|---|"]
    specs = {c.index: c for c in plan.chunks}
    for result in ordered[:MAX_CHUNK_ROWS]:
        spec = specs[result.index]
        lines.append(f"| {result.index} | {spec.start}–{spec.stop - 1} | {spec.seeds[0]}…{spec.seeds[-1]} | "
                     f"{len(result.rendered)} | {len(result.reused)} | {result.seconds:.2f} s | "
                     f"{result.worker or '–'} | {result.visible_devices or '–'} |")
    if len(ordered) > MAX_CHUNK_ROWS:
        lines.append(f"| … | {len(ordered) - MAX_CHUNK_ROWS} more chunks in chunks.json | | | | | | |")
    return "\n".join(lines) + "\n"
