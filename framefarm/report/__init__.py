"""Job reports: ``report.html`` beside a job's video.

One self-contained page per job: the video, a contact sheet of frames, every schedule as a plot (seeds too), the
prompt timeline, per-chunk timings with worker and GPU, models and their hashes, and the resolved job. It works
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

from framefarm.report.collect import PREVIEW_NAME, ChunkTiming, ReportData, collect, write_timings
from framefarm.report.contact import LATEST_WIDTH, THUMBS, pick_frames, thumbnails
from framefarm.report.page import render_page
from framefarm.storage.atomic import atomic_write_bytes

__all__ = ["REPORT_NAME", "ChunkTiming", "ReportData", "report_location", "write_report"]

REPORT_NAME = "report.html"
PREVIEW_WIDTH = 480  # browsers' preview of a HAP/ProRes deliverable: small, fast to encode, plays everywhere


def report_location(store_root: str, job_name: str) -> str:
    """Where ``report.html`` of a job is (or will be): a local path, or a URL on a remote store."""
    from framefarm.storage import FrameStore

    store = FrameStore(store_root, job_name)
    local = store.local_path(REPORT_NAME)
    return os.path.abspath(local) if local is not None else store.fs.unstrip_protocol(store.path(REPORT_NAME))


def _write_preview(data: ReportData) -> ReportData:
    """Encode a small H.264 preview when the deliverable can't play in a browser (HAP, ProRes, DNxHR, H.265).

    Only for a finished job, once: a later report reuses it. Costs one decode of each frame (streamed).
    """
    import dataclasses

    from framefarm.images import decode_png
    from framefarm.report.collect import find_preview
    from framefarm.video.encode import write_video_frames

    if data.video is None or data.video.element is not None or data.preview is not None or not data.complete:
        return data
    if data.video.name.endswith("/") or not data.done:
        return data
    store = data.store
    job = data.job
    width, height = int(job.get("width", 0)), int(job.get("height", 0))
    if not width or not height:
        return data
    if width > PREVIEW_WIDTH:
        height, width = max(2, round(height * PREVIEW_WIDTH / width / 2) * 2), PREVIEW_WIDTH
    width -= width % 2
    height -= height % 2

    def frames():
        import cv2

        for index in data.done:
            image = decode_png(store.read_frame_bytes(index))
            if image.shape[1] != width or image.shape[0] != height:
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            yield image

    local = store.local_path(PREVIEW_NAME)
    if local is not None:
        write_video_frames(frames(), local, width=width, height=height, fps=data.fps, crf=26, preset="veryfast")
    else:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, PREVIEW_NAME)
            write_video_frames(frames(), path, width=width, height=height, fps=data.fps, crf=26, preset="veryfast")
            store.fs.put_file(path, store.path(PREVIEW_NAME))
    return dataclasses.replace(data, preview=find_preview(store))


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
        thumbs (`int`, *optional*, defaults to 24): frames on the contact sheet.
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
    sheet = thumbnails(data.store, pick_frames(data.done, thumbs))
    latest = None
    if data.latest is not None and not data.complete:
        found = thumbnails(data.store, [data.latest], width=LATEST_WIDTH)
        latest = found[0] if found else None
    html = render_page(data, sheet, latest)
    atomic_write_bytes(data.store.fs, data.store.path(REPORT_NAME), html.encode("utf-8"))
    return report_location(store_root, job_name)
