"""Job reports: ``report.html`` beside a job's video.

One self-contained page per job: the video, a contact sheet of frames, every schedule as a plot (seeds too), the
prompt timeline, per-chunk timings with worker and GPU, models and their hashes, and the resolved job. A Deforum job
with variations gets one section per take instead of the video and sheet: its name, seed offset and added prompts,
its own video and a contact sheet of its own frames, at the same time steps as the other takes. It works
while a job is still rendering (progress and the latest finished frame) and for stores on S3.

    >>> from framefarm.report import write_report
    >>> write_report("renders", "zoom-tunnel")            # doctest: +SKIP
    '/abs/renders/zoom-tunnel/report.html'

``framefarm report JOB`` makes or finds it from the command line.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

from framefarm.report.collect import (
    PREVIEW_NAME,
    ChunkTiming,
    ReportData,
    VideoFile,
    collect,
    preview_name,
    write_timings,
)
from framefarm.report.contact import LATEST_WIDTH, THUMBS, pick_frames, thumbnails
from framefarm.report.page import render_page
from framefarm.storage.atomic import atomic_write_bytes

__all__ = ["REPORT_NAME", "ChunkTiming", "ReportData", "report_location", "write_report"]

REPORT_NAME = "report.html"
PREVIEW_WIDTH = 480  # browsers' preview of a HAP/ProRes deliverable: small, fast to encode, plays everywhere
# Fewest thumbnails per variation: a take must show enough of itself to be judged, even among 64 takes.
VARIATION_THUMBS = 8


def report_location(store_root: str, job_name: str) -> str:
    """Where ``report.html`` of a job is (or will be): a local path, or a URL on a remote store."""
    from framefarm.storage import FrameStore

    store = FrameStore(store_root, job_name)
    local = store.local_path(REPORT_NAME)
    return os.path.abspath(local) if local is not None else store.fs.unstrip_protocol(store.path(REPORT_NAME))


def _write_preview(data: ReportData) -> ReportData:
    """Encode a small H.264 preview when the deliverable can't play in a browser (HAP, ProRes, DNxHR, H.265).

    Only for a finished job, once: a later report reuses it. Costs one decode of each frame (streamed). A job with
    variations gets one per variation, of that variation's frames only.
    """
    import dataclasses

    from framefarm.report.collect import find_preview

    if not data.complete or not data.done:
        return data
    if not data.variations:
        if _encode_preview(data, data.video, data.preview, list(data.done), PREVIEW_NAME):
            return dataclasses.replace(data, preview=find_preview(data.store))
        return data
    count = data.variation_count
    variations = []
    for variation in data.variations:
        frames = [t * count + variation.index for t in data.variation_done(variation.index)]
        if _encode_preview(data, variation.video, variation.preview, frames, preview_name(variation.name)):
            variation = dataclasses.replace(variation, preview=find_preview(data.store, variation.name))
        variations.append(variation)
    first = variations[0]
    return dataclasses.replace(data, variations=tuple(variations), video=first.video, preview=first.preview)


def _encode_preview(data: ReportData, video: VideoFile | None, preview: VideoFile | None, indices: list[int],
                    name: str) -> bool:
    """Encode stored frames ``indices`` as the preview ``name`` of ``video`` if it needs one; whether it did."""
    from framefarm.images import decode_png
    from framefarm.video.encode import write_video_frames

    if video is None or video.element is not None or preview is not None or not indices:
        return False
    if video.name.endswith("/"):
        return False
    store = data.store
    job = data.job
    width, height = int(job.get("width", 0)), int(job.get("height", 0))
    if not width or not height:
        return False
    if width > PREVIEW_WIDTH:
        height, width = max(2, round(height * PREVIEW_WIDTH / width / 2) * 2), PREVIEW_WIDTH
    width -= width % 2
    height -= height % 2

    def frames():
        import cv2

        for index in indices:
            image = decode_png(store.read_frame_bytes(index))
            if image.shape[1] != width or image.shape[0] != height:
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            yield image

    local = store.local_path(name)
    if local is not None:
        write_video_frames(frames(), local, width=width, height=height, fps=data.fps, crf=26, preset="veryfast")
    else:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, name)
            write_video_frames(frames(), path, width=width, height=height, fps=data.fps, crf=26, preset="veryfast")
            store.fs.put_file(path, store.path(name))
    return True


def _sheet_frames(data: ReportData, thumbs: int) -> list[int]:
    """Stored frames on the contact sheet(s): ``thumbs`` evenly spread finished frames, or, with variations, the
    same time steps of every variation (so the takes' sheets line up, column for column), fewer of them per take
    when there are many takes so the page stays light."""
    if not data.variations:
        return pick_frames(data.done, thumbs)
    count = data.variation_count
    per_take = min(thumbs, max(VARIATION_THUMBS, -(-2 * thumbs // count)))
    steps = pick_frames(sorted({index // count for index in data.done}), per_take)
    done = set(data.done)
    return [t * count + v for v in range(count) for t in steps if t * count + v in done]


def write_report(store_root: str, job_name: str, chunk_timings: Sequence[Any] | None = None, *,
                 thumbs: int = THUMBS, preview: bool = True) -> str:
    """Write ``report.html`` into the job's folder of the store, beside its video, and return where it is.

    Safe to call at any time: for a finished job (what the render flow does last), while a job renders (progress
    and the latest finished frame), or again later (``framefarm report``). Reads everything from the store, through
    :class:`~framefarm.storage.FrameStore`, so a remote (``s3://``) store works the same as a local folder.

    Args:
        store_root (`str`): the store root the job was rendered into (``--out``): a folder or an fsspec URL.
        job_name (`str`): the job's name (its folder under the root).
        chunk_timings (`list[dict]`, *optional*): one entry per chunk run, each a dict (or a dataclass such as the
            flow's ``ChunkResult``) with ``index`` and ``seconds`` and, when known, ``rendered`` and ``reused``
            (counts or lists of frames), ``worker``, ``gpu``, ``started``, ``finished`` (ISO-8601) and ``cached``.
            They are saved as ``timings.json`` beside the job; left out, the saved ones are shown.
        thumbs (`int`, *optional*, defaults to 24): frames on the contact sheet. A job with variations shows
            each variation's own frames at the same time steps: all 24 for two takes, fewer per take for more
            (at least 8).
        preview (`bool`, *optional*, defaults to True): for a deliverable browsers can't play (HAP, ProRes …),
            encode a small H.264 ``report-preview.mp4`` once so the page has a video to show.

    Returns:
        The report's local path (absolute), or its URL on a remote store.

    Raises:
        InputError: the store has no ``job.json`` for ``job_name``.
    """
    data = collect(store_root, job_name, chunk_timings)
    if chunk_timings is not None:
        write_timings(data.store, data.timings)
    if preview:
        data = _write_preview(data)
    sheet = thumbnails(data.store, _sheet_frames(data, thumbs))
    latest = None
    if data.latest is not None and not data.complete:
        found = thumbnails(data.store, [data.latest], width=LATEST_WIDTH)
        latest = found[0] if found else None
    html = render_page(data, sheet, latest)
    atomic_write_bytes(data.store.fs, data.store.path(REPORT_NAME), html.encode("utf-8"))
    return report_location(store_root, job_name)
