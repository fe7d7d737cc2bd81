"""The report page: one self-contained HTML file (inline CSS, SVG, JPEG thumbnails and script; no network).

The only outside references are relative links to files beside it in the job folder: the video (played in the
page), and each frame's PNG (a thumbnail links to its full-size frame). A Content-Security-Policy forbids
everything else, so a report can never call out to a CDN or anything on the network, even by mistake.

The markup lives in Jinja2 templates (``templates/``, shipped as package data; see :mod:`.templating`) with
autoescaping on, so a job name, prompt or worker name is always shown as text, whatever it holds. This module only
works out what to show.

A job with variations (V takes stored interleaved, frame ``t`` of take ``v`` at ``t·V + v``) shows one section per
take in place of the single video and contact sheet: what the take is (name, seed offset, added prompts), its video
and its own frames. Counts and progress are of stored frames; schedules, the seed plot and the prompt timeline are
per time step ``t``, which every take shares.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from markupsafe import Markup

from framefarm.report.collect import ReportData, VideoFile, dumps, frame_prompts, model_rows, schedule_values
from framefarm.report.contact import Thumb
from framefarm.report.svg import PALETTE, bar_chart, line_plot, number
from framefarm.report.templating import render

# Plotted first, in this order, when they vary; every other varying schedule follows in name order.
PREFERRED = ("zoom", "angle", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
             "rotation_3d_z", "strength", "noise", "cfg_scale", "steps", "contrast")
# Always plotted, even when constant: what people look at first.
ALWAYS = ("zoom", "strength", "cfg_scale")
MAX_PROMPT_RUNS = 80  # more runs than this (backtick maths changing every frame): list the keyframes instead
MAX_NAMED_TAKES = 8  # variations named in the header; every one has its own section anyway

def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return ""


def _status(data: ReportData) -> tuple[str, str]:
    if data.complete:
        return "complete", "complete"
    if data.done:
        return "running", f"{len(data.done)}/{data.frames} frames"
    return "empty", "no frames yet"




# What each section of the page shows, worked out here and written by templates/sections.html.j2.


@dataclass(frozen=True)
class _Fact:
    label: str
    value: str
    progress: float | None = None  # percent done, drawn as a bar under the value


@dataclass(frozen=True)
class _Header:
    status_class: str  # the badge's CSS class: complete, running or empty
    status: str
    description: str
    facts: list[_Fact]


@dataclass(frozen=True)
class _Figure:
    thumb: Thumb
    seed: int | None
    prompt: str  # the frame's positive prompt, as the thumbnail's tooltip
    step: int | None = None  # with variations: the frame's time step t (thumb.index is the stored frame t·V + v)


@dataclass(frozen=True)
class _Sheet:
    figures: list[_Figure]
    done: int  # finished frames, of which the figures are a sample


@dataclass(frozen=True)
class _Take:
    """One variation's section: what it is, its video, and a sheet of its own frames."""

    index: int
    name: str
    seed_offset: str  # signed, "+1000003"
    positive: str  # added after every frame's positive prompt
    negative: str
    video: VideoFile | None
    preview: VideoFile | None
    done: int  # its finished time steps
    frames: int  # its time steps planned
    figures: list[_Figure]

    @property
    def note_id(self) -> str:
        return f"video-note-{self.index}"


@dataclass(frozen=True)
class _Schedules:
    plots: list[Markup]
    constant: list[tuple[str, str]]  # (schedule, its one value) for those not plotted


@dataclass(frozen=True)
class _PromptRun:
    first: int
    last: int
    colour: str
    span: str
    seconds: str
    positive: str
    negative: str

    @property
    def length(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class _Prompts:
    runs: list[_PromptRun]
    frames: int
    keyframes: list[tuple[str, str]] | None = None  # too many runs to draw: the job's prompt keyframes instead
    run_count: int = 0


@dataclass(frozen=True)
class _TimingRow:
    index: int
    cached: bool
    span: str
    rendered: str
    reused: str
    seconds: str
    per_frame: str
    worker: str
    gpu: str
    started: str


@dataclass(frozen=True)
class _Timings:
    rows: list[_TimingRow]
    summary: str = ""
    chart: Markup | None = None
    worker: bool = False  # show the worker column (some chunk knows its worker)
    gpu: bool = False


def _header(data: ReportData) -> _Header:
    job, plan = data.job, data.plan or {}
    status_class, status = _status(data)
    output = job.get("output") or {}
    fps, frames = data.fps, data.frames
    facts = [
        _Fact("kind", f"{job.get('kind', '?')}" + (f" ({job['animation_mode']})" if job.get("animation_mode") else "")),
        _Fact("size", f"{job.get('width', '?')} × {job.get('height', '?')}"),
    ]
    if data.variations:
        steps, count = data.time_steps, data.variation_count
        facts.append(_Fact("frames", f"{frames} stored: {steps} × {count} variations at {fps:g} fps "
                                     f"({steps / fps:.2f} s each)"))
        names = [v.name for v in data.variations]
        shown = ", ".join(names[:MAX_NAMED_TAKES]) + (f", … ({len(names) - MAX_NAMED_TAKES} more)"
                                                       if len(names) > MAX_NAMED_TAKES else "")
        facts.append(_Fact("variations", f"{count}: {shown}"))
    else:
        facts.append(_Fact("frames", f"{frames} at {fps:g} fps ({frames / fps:.2f} s)"))
    facts.append(_Fact("seed", f"{job.get('seed', '?')} ({(job.get('seeds') or {}).get('behavior', 'iter')})"))
    if plan:
        facts.append(_Fact("renderer", str(plan.get("renderer", "?"))))
        size = plan.get("chunk_size", "?")
        # With variations a chunk holds whole time steps, each one lockstep batch of every take.
        steps = f" ({size // data.variation_count} time steps)" if data.variations and isinstance(size, int) else ""
        facts.append(_Fact("chunks", f"{len(plan.get('chunks', []))} of ≤ {size} frames{steps}"))
    codec = str(output.get("codec", "h264"))
    if output.get("loop"):
        codec += ", loop" + (f" ({output['loop_close']})" if output.get("loop_close", "none") != "none" else "")
    facts.append(_Fact("output", codec))
    if output.get("bpm"):
        beats = output.get("beats")
        facts.append(_Fact("tempo", f"{number(float(output['bpm']))} BPM" + (f", {beats} beats" if beats else "")))
    if data.variations:
        found = [v.video for v in data.variations if v.video is not None]
        if found:
            total = sum(v.size or 0 for v in found)
            facts.append(_Fact("videos", f"{len(found)} of {len(data.variations)}"
                                         + (f" ({_size(total)})" if total else "")))
    elif data.video is not None:
        facts.append(_Fact("video", data.video.name + (f" ({_size(data.video.size)})" if data.video.size else "")))
    progress = 100.0 * len(data.done) / frames if not data.complete and frames else None
    facts.append(_Fact("status", status, progress))
    return _Header(status_class, status, job.get("description") or "", facts)


def _prompt_at(prompts: list[tuple[int, int, str, str]], index: int) -> str:
    for start, stop, positive, _negative in prompts:
        if start <= index < stop:
            return positive
    return ""


def _sheet(data: ReportData, thumbs: Sequence[Thumb], prompts: list[tuple[int, int, str, str]]) -> _Sheet:
    seeds = data.seeds()
    figures = [_Figure(thumb, seeds[thumb.index] if seeds and thumb.index < len(seeds) else None,
                       _prompt_at(prompts, thumb.index)) for thumb in thumbs]
    return _Sheet(figures, len(data.done))


def _join(prompt: str, extra: str) -> str:
    # As the planner joins a variation's added prompt to each frame's (framefarm.animation.plan).
    return ", ".join(part for part in (prompt, extra) if part)


def _takes(data: ReportData, thumbs: Sequence[Thumb], prompts: list[tuple[int, int, str, str]]) -> list[_Take]:
    """One section per variation, each with the thumbnails of its own stored frames (``index % V == v``)."""
    seeds = data.seeds()
    count = data.variation_count
    takes = []
    for variation in data.variations:
        figures = [_Figure(thumb, seeds[thumb.index] if seeds and thumb.index < len(seeds) else None,
                           _join(_prompt_at(prompts, thumb.index // count), variation.positive_prompt),
                           step=thumb.index // count)
                   for thumb in thumbs if thumb.index % count == variation.index]
        takes.append(_Take(index=variation.index, name=variation.name, seed_offset=f"{variation.seed_offset:+d}",
                           positive=variation.positive_prompt, negative=variation.negative_prompt,
                           video=variation.video, preview=variation.preview,
                           done=len(data.variation_done(variation.index)), frames=data.time_steps, figures=figures))
    return takes


def _step_seeds(data: ReportData) -> tuple[list[int] | None, str]:
    """The seed of each time step, and the plot's title: every frame's seed, or with variations the first take's
    (the others' are the same plus their seed offsets)."""
    seeds = data.seeds()
    if seeds is None or not data.variations:
        return seeds, "seed"
    first = data.variations[0]
    title = f"seed of {first.name}" + (" (other variations add their seed offset)" if len(data.variations) > 1 else "")
    return seeds[first.index::data.variation_count], title


def _schedules(data: ReportData, prompts: list[tuple[int, int, str, str]]) -> tuple[_Schedules, list[str]]:
    values, notes = schedule_values(data.job)
    seeds, seed_title = _step_seeds(data)
    markers = [(start, f"frame {start}: {positive}") for start, _stop, positive, _neg in prompts[1:MAX_PROMPT_RUNS]]
    varying = {name: v for name, v in values.items() if v.size and float(np.ptp(v)) > 0}
    names = [n for n in PREFERRED if n in varying] + sorted(n for n in varying if n not in PREFERRED)
    names += [n for n in ALWAYS if n in values and n not in names]
    plots = []
    for i, name in enumerate(names):
        title = name + ("" if name in varying else " (constant)")
        plots.append(line_plot(values[name], name=name.replace(".", "-"), title=title, fps=data.fps, markers=markers,
                               colour=PALETTE[i % len(PALETTE)], step=name in ("steps", "clip_skip")))
    if seeds is not None:
        plots.append(line_plot(np.asarray(seeds, np.float64), name="seed", title=seed_title, fps=data.fps,
                               markers=markers, colour=PALETTE[len(names) % len(PALETTE)], step=True))
    constant = sorted(n for n in values if n not in names and values[n].size)
    return _Schedules(plots, [(n, number(float(values[n][0]))) for n in constant]), notes


def _prompts(data: ReportData, prompts: list[tuple[int, int, str, str]]) -> _Prompts:
    frames = max(1, data.time_steps)
    if len(prompts) > MAX_PROMPT_RUNS:
        keys = data.job.get("prompts") or {}
        return _Prompts([], frames, [(str(k), str(v)) for k, v in keys.items()], len(prompts))
    runs = [_PromptRun(first=start, last=stop - 1, colour=PALETTE[i % len(PALETTE)],
                       span=f"{start}–{stop - 1}" if stop - start > 1 else f"{start}",
                       seconds=f"{start / data.fps:.2f}–{stop / data.fps:.2f} s", positive=positive, negative=negative)
            for i, (start, stop, positive, negative) in enumerate(prompts)]
    return _Prompts(runs, frames)


def _blank(value: Any) -> str:
    return "" if value is None else str(value)


def _timings(data: ReportData) -> _Timings:
    timings = data.timings
    if not timings:
        return _Timings([])
    chart = bar_chart([t.seconds for t in timings], [str(t.index) for t in timings], name="chunk-seconds",
                      title="seconds per chunk")
    rows = [_TimingRow(index=t.index, cached=bool(t.cached),
                       span=f"{t.start}–{t.stop - 1}" if t.start is not None and t.stop is not None else "",
                       rendered=_blank(t.rendered), reused=_blank(t.reused), seconds=f"{t.seconds:.2f}",
                       per_frame=f"{t.seconds / t.rendered:.3f}" if t.rendered else "",
                       worker=t.worker or "", gpu=t.gpu or "", started=t.started or "") for t in timings]
    total = sum(t.seconds for t in timings)
    rendered = sum(t.rendered or 0 for t in timings)
    summary = f"{len(timings)} chunk(s), {total:.1f} s of chunk time"
    if rendered:
        summary += f", {rendered} frame(s) rendered, {total / rendered:.3f} s per frame"
    return _Timings(rows, summary, chart, worker=any(t.worker for t in timings), gpu=any(t.gpu for t in timings))


def render_page(data: ReportData, thumbs: Sequence[Thumb], latest: Thumb | None) -> str:
    """The whole report as one HTML document."""
    # Prompts and schedules are per time step: with variations, every take shares them.
    prompts, prompt_notes = frame_prompts(data.job, max(1, data.time_steps))
    schedules, schedule_notes = _schedules(data, prompts)
    made = dt.datetime.fromisoformat(data.generated).strftime("%Y-%m-%d %H:%M:%S UTC")
    takes = _takes(data, thumbs, prompts)
    latest_label = None
    if latest is not None and data.variations:
        step, take = divmod(latest.index, data.variation_count)
        latest_label = f"frame {step} of {data.variations[take].name}" if take < len(data.variations) else None
    return str(render(
        "report.html.j2",
        job_name=data.job_name, frames=data.frames, done=len(data.done),
        header=_header(data),
        notes=[*data.notes, *prompt_notes, *schedule_notes],
        video=data.video, preview=data.preview,
        latest=None if data.complete else latest,  # a finished job shows its video, not its last frame
        latest_label=latest_label,
        generated=data.generated,
        takes=takes, time_steps=data.time_steps,
        sheet=_sheet(data, [] if takes else thumbs, prompts),
        schedules=schedules,
        prompts=_prompts(data, prompts),
        timings=_timings(data),
        models=model_rows(data.job, data.plan, data.manifest),
        job_json=dumps(data.job),
        made=made,
        where=data.store.local_path() or data.store.fs.unstrip_protocol(data.store.job_dir),
    ))
