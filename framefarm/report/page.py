"""The report page: one self-contained HTML file (inline CSS, SVG, JPEG thumbnails and script; no network).

The only outside references are relative links to files beside it in the job folder: the video (played in the
page), and each frame's PNG (a thumbnail links to its full-size frame). A Content-Security-Policy forbids
everything else, so a report can never call out to a CDN or anything on the network, even by mistake.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from typing import Any

import numpy as np

from framefarm.report.collect import ReportData, VideoFile, dumps, frame_prompts, model_rows, schedule_values
from framefarm.report.contact import Thumb
from framefarm.report.svg import PALETTE, bar_chart, line_plot, number

# Plotted first, in this order, when they vary; every other varying schedule follows in name order.
PREFERRED = ("zoom", "angle", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
             "rotation_3d_z", "strength", "noise", "cfg_scale", "steps", "contrast")
# Always plotted, even when constant: what people look at first.
ALWAYS = ("zoom", "strength", "cfg_scale")
MAX_PROMPT_RUNS = 80  # more runs than this (backtick maths changing every frame): list the keyframes instead

CSP = ("default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")

STYLE = """
:root { color-scheme: dark; --bg: #0f1115; --panel: #171a21; --line: #2a2f3a; --text: #e6e8ee; --dim: #9aa3b2;
        --accent: #4cc9f0; --ok: #06d6a0; --warn: #ffb703; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, sans-serif; }
main { max-width: 1360px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 10px; color: var(--accent); }
.sub { color: var(--dim); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         vertical-align: middle; margin-left: 8px; }
.badge.complete { background: #0b3d30; color: var(--ok); } .badge.running { background: #3d300b; color: var(--warn); }
.badge.empty { background: #2a2f3a; color: var(--dim); }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 8px; margin-top: 14px; }
.fact { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.fact b { display: block; font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--dim);
          font-weight: 600; }
.progress { height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; margin-top: 6px; }
.progress span { display: block; height: 100%; background: var(--warn); }
.player { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
.player video, .player img.deliverable { max-width: min(100%, 960px); max-height: 540px; background: #000;
                                         border: 1px solid var(--line); }
.note { color: var(--dim); font-style: italic; }
.sheet { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.sheet figure { margin: 0; background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
                overflow: hidden; }
.sheet img { display: block; width: 100%; height: auto; image-rendering: auto; }
.sheet figcaption { padding: 4px 6px; font-size: 12px; color: var(--dim); white-space: nowrap; overflow: hidden;
                    text-overflow: ellipsis; }
.latest img { border: 2px solid var(--warn); width: 384px; max-width: 100%; height: auto; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 12px; }
svg.plot { width: 100%; height: auto; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; }
svg.plot .title { fill: var(--text); font-size: 12px; font-weight: 600; }
svg.plot .frame { fill: none; stroke: var(--line); }
svg.plot .grid { stroke: var(--line); stroke-dasharray: 2 3; }
svg.plot .tick { stroke: var(--dim); }
svg.plot .ylabel, svg.plot .xlabel { fill: var(--dim); font-size: 10px; }
svg.plot .curve { stroke-width: 1.6; stroke-linejoin: round; }
svg.plot .marker { stroke: #f72585; stroke-dasharray: 4 3; opacity: .7; }
svg.plot .cursor { stroke: var(--text); opacity: .5; }
svg.plot .readout { fill: var(--text); font-size: 11px; }
table { border-collapse: collapse; width: 100%; background: var(--panel); border: 1px solid var(--line); }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--dim); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
pre { background: var(--panel); border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 480px; }
.timeline { display: flex; height: 26px; border-radius: 4px; overflow: hidden; border: 1px solid var(--line); }
.timeline div { min-width: 2px; }
.prompts td:first-child { white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.neg { color: #ef8fa4; }
details summary { cursor: pointer; color: var(--accent); }
footer { margin-top: 36px; color: var(--dim); font-size: 12px; }
"""

SCRIPT = """
(function () {
  "use strict";
  function show(value) {
    var a = Math.abs(value);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) { return value.toPrecision(4); }
    return String(Math.round(value * 1e5) / 1e5);
  }
  Array.prototype.forEach.call(document.querySelectorAll("svg.plot[data-values]"), function (svg) {
    var values = JSON.parse(svg.getAttribute("data-values"));
    var frames = Number(svg.getAttribute("data-frames"));
    var left = Number(svg.getAttribute("data-left")), right = Number(svg.getAttribute("data-right"));
    var cursor = svg.querySelector(".cursor"), readout = svg.querySelector(".readout");
    function hide() { cursor.setAttribute("visibility", "hidden"); readout.textContent = ""; }
    svg.addEventListener("pointermove", function (event) {
      var box = svg.getBoundingClientRect(), view = svg.viewBox.baseVal;
      var x = (event.clientX - box.left) * view.width / box.width;
      var t = (x - left) / (view.width - left - right);
      if (!(t >= 0 && t <= 1) || values.length === 0) { hide(); return; }
      var frame = Math.round(t * (frames - 1)), i = Math.round(t * (values.length - 1));
      cursor.setAttribute("x1", x); cursor.setAttribute("x2", x); cursor.setAttribute("visibility", "visible");
      readout.textContent = "frame " + frame + ": " + show(values[i]);
    });
    svg.addEventListener("pointerleave", hide);
  });
  Array.prototype.forEach.call(document.querySelectorAll("video.deliverable"), function (video) {
    function loaded() {
      video.setAttribute("data-duration", String(video.duration));
      video.setAttribute("data-video-width", String(video.videoWidth));
      video.setAttribute("data-video-height", String(video.videoHeight));
    }
    if (video.readyState >= 1) { loaded(); } else { video.addEventListener("loadedmetadata", loaded); }
    video.addEventListener("error", function () {
      video.setAttribute("data-error", String(video.error ? video.error.code : "unknown"));
      var note = document.getElementById("video-note");
      if (note) { note.textContent = "This browser cannot play the video; open the file itself."; }
    });
  });
  document.body.setAttribute("data-report-ready", "1");
})();
"""


def _fact(label: str, value: str, extra: str = "") -> str:
    return f'<div class="fact"><b>{escape(label)}</b>{escape(value)}{extra}</div>'


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


def _header(data: ReportData) -> str:
    job, plan = data.job, data.plan or {}
    kind_class, status = _status(data)
    output = job.get("output") or {}
    fps, frames = data.fps, data.frames
    facts = [
        _fact("kind", f"{job.get('kind', '?')}" + (f" ({job['animation_mode']})" if job.get("animation_mode") else "")),
        _fact("size", f"{job.get('width', '?')} × {job.get('height', '?')}"),
        _fact("frames", f"{frames} at {fps:g} fps ({frames / fps:.2f} s)"),
        _fact("seed", f"{job.get('seed', '?')} ({(job.get('seeds') or {}).get('behavior', 'iter')})"),
    ]
    if plan:
        facts.append(_fact("renderer", str(plan.get("renderer", "?"))))
        facts.append(_fact("chunks", f"{len(plan.get('chunks', []))} of ≤ {plan.get('chunk_size', '?')} frames"))
    codec = str(output.get("codec", "h264"))
    if output.get("loop"):
        codec += ", loop" + (f" ({output['loop_close']})" if output.get("loop_close", "none") != "none" else "")
    facts.append(_fact("output", codec))
    if output.get("bpm"):
        beats = output.get("beats")
        facts.append(_fact("tempo", f"{number(float(output['bpm']))} BPM" + (f", {beats} beats" if beats else "")))
    if data.video is not None:
        facts.append(_fact("video", f"{data.video.name}" + (f" ({_size(data.video.size)})" if data.video.size else "")))
    progress = ""
    if not data.complete and frames:
        share = 100.0 * len(data.done) / frames
        progress = f'<div class="progress" title="{share:.0f} %"><span style="width:{share:.1f}%"></span></div>'
    facts.append(_fact("status", status, progress))
    description = f'<p class="sub">{escape(job["description"])}</p>' if job.get("description") else ""
    return (f'<header><h1>{escape(data.job_name)}<span class="badge {kind_class}" id="status">{escape(status)}'
            f'</span></h1>{description}<div class="facts">{"".join(facts)}</div></header>')


def _video_tag(video: VideoFile, *, label: str) -> str:
    source = escape(video.name, quote=True)
    if video.element == "img":
        return f'<img class="deliverable" src="{source}" alt="{escape(label)}">'
    return (f'<video class="deliverable" controls loop muted playsinline preload="metadata" '
            f'aria-label="{escape(label)}"><source src="{source}" type="{escape(video.mime or "video/mp4")}">'
            f'</video>')


def _video_section(data: ReportData) -> str:
    if data.video is None:
        return ('<section id="video"><h2>Video</h2><p class="note" id="video-note">No video yet: it is written when '
                'every frame is done.</p></section>')
    if data.video.element is not None:
        body = _video_tag(data.video, label=data.video.name)
        note = f'<p class="note" id="video-note">{escape(data.video.name)}</p>'
    elif data.preview is not None:
        body = _video_tag(data.preview, label=f"preview of {data.video.name}")
        note = (f'<p class="note" id="video-note">Preview (H.264). The deliverable, {escape(data.video.name)} '
                f'({escape(data.video.codec)}), plays in Resolume, TouchDesigner and edit suites, not in browsers.</p>')
    else:
        body = ""
        note = (f'<p class="note" id="video-note">{escape(data.video.name)} ({escape(data.video.codec)}) does not '
                'play in a browser; open it in Resolume, TouchDesigner or an edit suite.</p>')
    return f'<section id="video"><h2>Video</h2><div class="player">{body}</div>{note}</section>'


def _frame_link(index: int) -> str:
    return f"frames/{index:06d}.png"


def _contact_section(data: ReportData, thumbs: Sequence[Thumb], seeds: list[int] | None,
                     prompts: list[tuple[int, int, str, str]]) -> str:
    if not thumbs:
        return '<section id="contact-sheet"><h2>Contact sheet</h2><p class="note">No finished frames yet.</p></section>'

    def prompt_of(index: int) -> str:
        for start, stop, positive, _negative in prompts:
            if start <= index < stop:
                return positive
        return ""

    figures = []
    for thumb in thumbs:
        seed = f" · seed {seeds[thumb.index]}" if seeds and thumb.index < len(seeds) else ""
        title = escape(prompt_of(thumb.index), quote=True)
        figures.append(
            f'<figure data-frame="{thumb.index}"><a href="{_frame_link(thumb.index)}">'
            f'<img class="thumb" src="{thumb.data_url}" width="{thumb.width}" height="{thumb.height}" '
            f'alt="frame {thumb.index}" title="{title}"></a>'
            f'<figcaption>#{thumb.index}{escape(seed)}</figcaption></figure>')
    shown = f"{len(thumbs)} of {len(data.done)} finished frames"
    return (f'<section id="contact-sheet"><h2>Contact sheet <span class="sub">({shown})</span></h2>'
            f'<div class="sheet">{"".join(figures)}</div></section>')


def _latest_section(data: ReportData, latest: Thumb | None) -> str:
    if latest is None or data.complete:
        return ""
    return (f'<section id="latest" class="latest"><h2>Latest finished frame</h2>'
            f'<a href="{_frame_link(latest.index)}"><img class="thumb latest-frame" src="{latest.data_url}" '
            f'width="{latest.width}" height="{latest.height}" alt="frame {latest.index}"></a>'
            f'<p class="sub">frame {latest.index} · {len(data.done)}/{data.frames} done · report made '
            f'{escape(data.generated)}</p></section>')


def _schedule_section(data: ReportData, prompts: list[tuple[int, int, str, str]]) -> tuple[str, list[str]]:
    values, notes = schedule_values(data.job)
    seeds = data.seeds()
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
        plots.append(line_plot(np.asarray(seeds, np.float64), name="seed", title="seed", fps=data.fps,
                               markers=markers, colour=PALETTE[len(names) % len(PALETTE)], step=True))
    constant = sorted(n for n in values if n not in names and values[n].size)
    table = ""
    if constant:
        rows = "".join(f"<tr><td>{escape(n)}</td><td class='num'>{number(float(values[n][0]))}</td></tr>"
                       for n in constant)
        table = (f'<details><summary>{len(constant)} constant schedule(s)</summary><table><tr><th>schedule</th>'
                 f'<th class="num">value</th></tr>{rows}</table></details>')
    body = f'<div class="plots">{"".join(plots)}</div>' if plots else '<p class="note">No schedules to plot.</p>'
    return f'<section id="schedules"><h2>Schedules</h2>{body}{table}</section>', notes


def _prompt_section(data: ReportData, prompts: list[tuple[int, int, str, str]]) -> str:
    frames = max(1, data.frames)
    if not prompts:
        return ""
    if len(prompts) > MAX_PROMPT_RUNS:
        keys = data.job.get("prompts") or {}
        rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in keys.items())
        return (f'<section id="prompts"><h2>Prompts</h2><p class="note">The prompt changes on {len(prompts)} runs of '
                f'frames (backtick maths); the keyframes are:</p><table class="prompts"><tr><th>key</th>'
                f'<th>prompt</th></tr>{rows}</table></section>')
    bar, rows = [], []
    for i, (start, stop, positive, negative) in enumerate(prompts):
        colour = PALETTE[i % len(PALETTE)]
        bar.append(f'<div style="flex-grow:{stop - start};background:{colour}" '
                   f'title="frames {start}–{stop - 1}: {escape(positive, quote=True)}"></div>')
        neg = f'<div class="neg">negative: {escape(negative)}</div>' if negative else ""
        span = f"{start}–{stop - 1}" if stop - start > 1 else f"{start}"
        seconds = f"{start / data.fps:.2f}–{stop / data.fps:.2f} s"
        rows.append(f'<tr><td><span class="swatch" style="background:{colour}"></span>{span}<div class="sub">'
                    f'{seconds}</div></td><td>{escape(positive)}{neg}</td></tr>')
    return (f'<section id="prompts"><h2>Prompt timeline</h2><div class="timeline" data-frames="{frames}">'
            f'{"".join(bar)}</div><table class="prompts"><tr><th>frames</th><th>prompt</th></tr>{"".join(rows)}'
            f'</table></section>')


def _timings_section(data: ReportData) -> str:
    if not data.timings:
        return ('<section id="timings"><h2>Chunk timings</h2><p class="note">No chunk timings were recorded for this '
                'job.</p></section>')
    timings = data.timings
    chart = bar_chart([t.seconds for t in timings], [str(t.index) for t in timings], name="chunk-seconds",
                      title="seconds per chunk")
    gpu = any(t.gpu for t in timings)
    worker = any(t.worker for t in timings)
    head = ("<tr><th>chunk</th><th>frames</th><th class='num'>rendered</th><th class='num'>reused</th>"
            "<th class='num'>seconds</th><th class='num'>s / frame</th>" + ("<th>worker</th>" if worker else "")
            + ("<th>GPU</th>" if gpu else "") + "<th>started</th></tr>")
    rows = []
    for t in timings:
        span = f"{t.start}–{t.stop - 1}" if t.start is not None and t.stop is not None else ""
        per = f"{t.seconds / t.rendered:.3f}" if t.rendered else ""
        cached = " (cached)" if t.cached else ""
        rows.append(f"<tr><td>{t.index}{cached}</td><td>{span}</td><td class='num'>{_blank(t.rendered)}</td>"
                    f"<td class='num'>{_blank(t.reused)}</td><td class='num'>{t.seconds:.2f}</td>"
                    f"<td class='num'>{per}</td>" + (f"<td>{escape(t.worker or '')}</td>" if worker else "")
                    + (f"<td>{escape(t.gpu or '')}</td>" if gpu else "") + f"<td>{escape(t.started or '')}</td></tr>")
    total = sum(t.seconds for t in timings)
    rendered = sum(t.rendered or 0 for t in timings)
    summary = f"{len(timings)} chunk(s), {total:.1f} s of chunk time"
    if rendered:
        summary += f", {rendered} frame(s) rendered, {total / rendered:.3f} s per frame"
    return (f'<section id="timings"><h2>Chunk timings</h2><p class="sub">{escape(summary)}</p>'
            f'<div class="plots">{chart}</div><table>{head}{"".join(rows)}</table></section>')


def _blank(value: Any) -> str:
    return "" if value is None else escape(str(value))


def _models_section(data: ReportData) -> str:
    rows = model_rows(data.job, data.plan, data.manifest)
    if not rows:
        return ""
    body = "".join(f"<tr><td>{escape(what)}</td><td>{escape(value)}</td><td><code>{escape(digest)}</code></td></tr>"
                   for what, value, digest in rows)
    return (f'<section id="models"><h2>Models</h2><table><tr><th>what</th><th>value</th><th>hash</th></tr>{body}'
            f'</table></section>')


def render_page(data: ReportData, thumbs: Sequence[Thumb], latest: Thumb | None) -> str:
    """The whole report as one HTML document."""
    prompts, prompt_notes = frame_prompts(data.job, max(1, data.frames))
    schedules, schedule_notes = _schedule_section(data, prompts)
    notes = [*data.notes, *prompt_notes, *schedule_notes]
    note_html = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    where = data.store.local_path() or data.store.fs.unstrip_protocol(data.store.job_dir)
    made = dt.datetime.fromisoformat(data.generated).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="generator" content="framefarm">
<title>{escape(data.job_name)} · framefarm report</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body data-job="{escape(data.job_name, quote=True)}" data-frames="{data.frames}" data-done="{len(data.done)}">
<main>
{_header(data)}
{note_html}
{_video_section(data)}
{_latest_section(data, latest)}
{_contact_section(data, thumbs, data.seeds(), prompts)}
{schedules}
{_prompt_section(data, prompts)}
{_timings_section(data)}
{_models_section(data)}
<section id="job"><h2>Job</h2><details><summary>The resolved job (job.json)</summary>
<pre>{escape(dumps(data.job))}</pre></details></section>
<footer>framefarm report · {escape(made)} · {escape(where)}</footer>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""
