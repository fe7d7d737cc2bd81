"""The work of one chunk, without Prefect: render the frames the manifest lacks and commit each as it exists.

Kept free of Prefect (and of torch until a renderer loads it) because it runs in two places: in the task's own
thread when the watchdog is off, and in a render process (``framefarm.flows.render_process``) that starts fast and
can be killed when it hangs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from framefarm.animation.plan import ChunkSpec, canonical_hash
from framefarm.images import decode_png, encode_png
from framefarm.renderers import get_renderer
from framefarm.renderers.base import RenderContext, job_timeline
from framefarm.renderers.control_cache import ControlStore
from framefarm.storage import FrameStore
from framefarm.storage.writer_pool import FrameWriterPool

SOURCE_DIR = "source"


def source_reader(store: FrameStore) -> Callable[[int], Any]:
    def read(index: int):
        return decode_png(store.fs.cat_file(store.path(SOURCE_DIR, f"{index:06d}.png")))

    return read


def previous_reader(store: FrameStore) -> Callable[[int], Any]:
    def read(index: int):
        return decode_png(store.read_frame_bytes(index))

    return read


_listener = threading.local()


@contextmanager
def frame_listener(callback: Callable[[int], None]) -> Iterator[None]:
    """Call ``callback(frame)`` for each frame of the chunks this thread renders meanwhile, whether it renders them
    itself or waits on a render process (``render_in_process``): the chunk worker's measure of how far its chunk
    has got (``framefarm.flows.gpu_slot``)."""
    previous = getattr(_listener, "callback", None)
    _listener.callback = callback
    try:
        yield
    finally:
        _listener.callback = previous


def frame_committed(frame: int) -> None:
    """Tell this thread's :func:`frame_listener`, if any, that ``frame`` is done."""
    callback = getattr(_listener, "callback", None)
    if callback is not None:
        callback(frame)


_timelines: OrderedDict[str, ChunkSpec] = OrderedDict()
_timelines_lock = threading.Lock()


def timeline_of(job: Any) -> ChunkSpec:
    """The whole job's per-frame inputs (:attr:`RenderContext.timeline`), planned once per job in this process: a
    render process renders many chunks of one job, and planning a long job hashes every frame."""
    key = canonical_hash(job.model_dump(mode="json"))
    with _timelines_lock:
        if key in _timelines:
            _timelines.move_to_end(key)
            return _timelines[key]
    timeline = job_timeline(job)
    with _timelines_lock:
        _timelines[key] = timeline
        while len(_timelines) > 4:
            _timelines.popitem(last=False)
    return timeline


def render_chunk_frames(chunk: ChunkSpec, job: Any, backend: str, store: FrameStore,
                        on_frame: Callable[[int], None] | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Render the frames of ``chunk`` not yet in the manifest. Returns ``(rendered, reused)`` frame numbers.

    ``on_frame(frame)`` is called as each frame is handed to the writers: the watchdog's heartbeat. The writer
    pool holds a bounded number of frames, so a store that stops accepting writes stops the heartbeat too.
    """
    renderer = get_renderer(backend)
    # A render process outlives chunks, and fsspec caches listings per process: another process (the flow's repair
    # step, another worker) may have removed or added frames since, and the manifest is the truth, so read it afresh.
    store.fs.invalidate_cache()
    done = store.done_frames(dict(zip(chunk.frames, chunk.frame_keys)))
    todo = [frame for frame in chunk.frames if frame not in done]
    context = RenderContext(job=job, source_frame=source_reader(store), previous_frame=previous_reader(store),
                            controls=ControlStore(store), timeline=timeline_of(job))
    # PNG encoding and writes run on writer threads, overlapping the next batch's denoising. Leaving the
    # block waits for every frame handed over, also when the renderer failed, so finished frames are kept.
    with FrameWriterPool(store, encode_png) as writer:
        for frame, image in renderer.render(chunk, todo, context):
            i = chunk.local(frame)
            writer.submit(frame, image, key=chunk.frame_keys[i], seed=chunk.seeds[i],
                          width=image.shape[1], height=image.shape[0])
            if on_frame is not None:
                on_frame(frame)
            frame_committed(frame)
    rendered = writer.close()
    return tuple(rendered), tuple(sorted(done))
