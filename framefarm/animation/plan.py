"""Planning: a job becomes a :class:`RenderPlan` of chunks, each chunk a self-contained, hashable task spec.

Every frame gets a **frame key**: the SHA-256 of everything that determines its pixels (renderer and its version,
size, models, control inputs by content hash, the frame's seed, prompts, schedule values and camera). The frame key
is what the manifest records, so a frame rendered once is never rendered again, whatever the chunk size of the next
run. In a Deforum chain frame n is img2img of frame n−1, so its key also folds in the key of frame n−1: change frame
10 and frames 10… are stale, frames 0–9 are not.

A chunk's key is the hash of its frame keys: it is Prefect's cache key for the chunk task.

Shots (Deforum jobs with ``shots``): each shot is its own chain. Chunks never cross a shot's start, a shot's first
frame folds in no previous key but the shot (its start, init image, seed offset), and cadence groups, seeds' diffused
frames and the cumulative camera restart at each shot's start, while schedules and prompts keep the global frame
index. A job without shots plans exactly as before (same keys).

Variations (Deforum jobs with ``variations``): V versions of the animation, each its own chain, rendered in
lockstep. The store holds them interleaved — stored frame ``i = t·V + v`` is frame ``t`` of variation ``v`` — so a
chunk is a contiguous range of whole time steps (a multiple of V frames), and frame ``t`` of every variation is one
GPU batch whatever the chunking — from 8 variations on, one batch per lockstep group (:func:`lockstep_groups`).
A variation's frame folds in the key of its own previous frame (``i − V``), and the variation list and the frame's
lockstep group enter every key: batched matmuls are not bit-stable across batch compositions. Schedules, prompts and
the camera are the job's per time step, shared by all variations.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from framefarm.animation.camera import camera_motion, cumulative_camera
from framefarm.animation.job_frames import job_prompts, job_seeds
from framefarm.animation.schedules import evaluate_job_schedules
from framefarm.errors import InputError

if TYPE_CHECKING:  # the type only: importing the job models at run time would pull in pydantic
    from framefarm.job.schema import AnyJob

# Bump when the meaning of a frame key changes, so old manifests stop matching.
PLAN_FORMAT = 2

# Fields of a job that never change a frame's pixels: leaving them out of the frame key means renaming a job or
# changing its encode settings does not re-render anything. Prompts, motion and seeds enter per frame instead.
_NOT_PIXEL_FIELDS = {
    "name", "description", "frames", "fps", "output", "prompts", "positive_prompt", "negative_prompt", "motion",
    "seeds", "seed", "farm", "shots",  # shots enter per frame (a frame's key depends on its own shot only)
    "parseq",  # its series enter per frame, as values, prompts and seeds: one changed frame re-renders from there
}

# Automatic chunk size: at least MIN_AUTO_CHUNK frames (a Prefect task run costs 5–30 ms and a GPU frame
# ~0.2 s, so 16 frames keep orchestration under 1 %), at most MAX_AUTO_CHUNK (resume is per frame anyway, but a
# chunk is the unit a worker takes, so huge chunks starve other GPUs), aiming at ~TARGET_CHUNKS chunks per job so
# a 100 000-frame job stays far below the ~100 k task runs where Prefect's server starts to struggle.
MIN_AUTO_CHUNK = 16
MAX_AUTO_CHUNK = 256
TARGET_CHUNKS = 32


def auto_chunk_size(frames: int) -> int:
    """The chunk size used when none is given (see the constants above for why)."""
    return max(MIN_AUTO_CHUNK, min(MAX_AUTO_CHUNK, -(-frames // TARGET_CHUNKS)))


def canonical_hash(payload: Any) -> str:
    """SHA-256 of a JSON document with sorted keys and no whitespace: equal inputs, equal hash, on any machine."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChunkSpec:
    """One unit of render work: a contiguous frame range and every per-frame input it needs.

    Attributes:
        job: job name.
        index: chunk number in the plan.
        start: first frame (inclusive).
        stop: last frame + 1 (exclusive).
        frame_keys: the frame key of each frame in ``start … stop−1``.
        seeds: each frame's seed.
        prompts: each frame's positive prompt (global positive merged in).
        negative_prompts: each frame's negative prompt.
        values: each schedule's value per frame (``"zoom"``, ``"strength"``, …).
        camera: each frame's cumulative 2D camera matrix, row-major, 9 floats.
        key: hash of ``frame_keys``; the chunk task's cache key.
    """

    job: str
    index: int
    start: int
    stop: int
    frame_keys: tuple[str, ...]
    seeds: tuple[int, ...]
    prompts: tuple[str, ...]
    negative_prompts: tuple[str, ...]
    values: dict[str, tuple[float, ...]] = field(hash=False)
    camera: tuple[tuple[float, ...], ...]
    key: str
    shot: int = 0  # index of the shot (RenderPlan.shots) the chunk belongs to: chunks never cross a shot's start

    @property
    def frames(self) -> range:
        return range(self.start, self.stop)

    def local(self, frame: int) -> int:
        """Position of an absolute frame number inside this chunk's per-frame tuples."""
        if not self.start <= frame < self.stop:
            raise IndexError(f"frame {frame} is not in chunk {self.index} ({self.start}…{self.stop - 1})")
        return frame - self.start

    def camera_matrix(self, frame: int) -> np.ndarray:
        return np.asarray(self.camera[self.local(frame)], dtype=np.float64).reshape(3, 3)


@dataclass(frozen=True)
class RenderPlan:
    """A job cut into chunks. Pure data: serialisable, hashable, identical for identical jobs."""

    job: str
    kind: str
    renderer: str
    width: int
    height: int
    fps: float
    frames: int
    seed: int
    chained: bool
    chunk_size: int
    chunks: tuple[ChunkSpec, ...]
    shots: tuple[int, ...] = (0,)  # first frame of each shot, on the animation's timeline
    variations: int = 1  # chains rendered in lockstep; stored frame t·variations + v is frame t of variation v

    @property
    def frame_keys(self) -> dict[int, str]:
        return {frame: chunk.frame_keys[frame - chunk.start] for chunk in self.chunks for frame in chunk.frames}

    def summary(self) -> dict[str, Any]:
        """What ``framefarm plan --json`` prints: chunks with frame ranges, seeds and keys (no per-frame values)."""
        return {
            "job": self.job,
            "kind": self.kind,
            "renderer": self.renderer,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frames": self.frames,
            "seed": self.seed,
            "chained": self.chained,
            "chunk_size": self.chunk_size,
            "shots": list(self.shots),
            "variations": self.variations,
            "chunks": [
                {
                    "index": chunk.index,
                    "start": chunk.start,
                    "stop": chunk.stop,
                    "frames": chunk.stop - chunk.start,
                    "shot": chunk.shot,
                    "seeds": list(chunk.seeds),
                    "key": chunk.key,
                }
                for chunk in self.chunks
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Chains per lockstep group: V variations are split into ⌈V/8⌉ groups (at least two from 8 variations on), each one
# UNet batch per time step. Two or more groups keep the GPU busy: while one group's batch runs, the CPU finishes the
# other group's frames and prepares its next inits (warp, colour coherence, noise). 8 chains with CFG are a batch of
# 16, which fills a GPU at 512² nearly as well as 32. Which chains share a batch fixes their pixels (batched matmuls
# round differently), so the groups are a function of V alone and enter every frame key.
LOCKSTEP_GROUP_CHAINS = 8


def lockstep_groups(count: int) -> tuple[tuple[int, ...], ...]:
    """The variations of a job with ``count`` variations split into lockstep groups: contiguous, sizes differing by
    at most one; one group below 8 variations (a smaller batch gains more from its size than from the overlap)."""
    if count < 8:
        return (tuple(range(count)),)
    n = max(2, -(-count // LOCKSTEP_GROUP_CHAINS))
    bounds = [round(i * count / n) for i in range(n + 1)]
    return tuple(tuple(range(bounds[i], bounds[i + 1])) for i in range(n))


def variation_count(job: AnyJob) -> int:
    """Chains of ``job`` rendered in lockstep: its number of variations, 1 for a job without (duck-typed)."""
    return max(1, len(getattr(job, "variations", None) or ()))


def stored_frames(job: AnyJob) -> int:
    """Frames of ``job`` in its store: ``frames`` of every variation."""
    return int(job.frames) * variation_count(job)


def shot_starts(job: AnyJob) -> tuple[int, ...]:
    """First frame of each shot of ``job``: ``(0,)`` for a job without shots (duck-typed, as :func:`plan_job`)."""
    shots = getattr(job, "shot_list", None)
    return tuple(shot.start for shot in shots) if shots else (0,)


def shot_of(starts: tuple[int, ...], frame: int) -> int:
    """Index of the shot holding ``frame``, given the shots' first frames (sorted, the first 0)."""
    return bisect.bisect_right(starts, frame) - 1


def plan_job(
    job: AnyJob,
    *,
    renderer: str,
    chunk_size: int | None = None,
    input_hashes: dict[str, str] | None = None,
    cut_at_shots: bool = True,
) -> RenderPlan:
    """Cut a validated job into chunks of at most ``chunk_size`` frames.

    Args:
        job: a validated job spec (``framefarm.job``); duck-typed, so this module needs no pydantic.
        renderer: renderer id with version (``"preview@1"``): part of every frame key.
        chunk_size: frames per chunk; defaults to :func:`auto_chunk_size`. Chunks are the unit of retry and
            caching: big enough to amortise task overhead (≥ 10 s of GPU work), small enough to lose little on a crash.
        input_hashes: content hashes of external inputs (init image, source video, model files) by field name, so
            replacing a file's content changes the keys of the frames it feeds. A shot's own init image comes as
            ``shot@<start>.init_image`` and enters only the keys of that shot's frames.
        cut_at_shots: end chunks at shot starts (the default; the flow needs it). ``False`` gives the renderer's
            view of the whole job in one chunk per ``chunk_size``, per-frame values unchanged.

    Returns:
        The plan. Frames are identical whatever the chunk size: chunking never enters a frame key.
    """
    # 1. Check inputs.
    # A chunk's frames are stored frames; with variations, the automatic size counts time steps, each of which is
    # one lockstep batch of every variation.
    size = auto_chunk_size(job.frames) * variation_count(job) if chunk_size is None else chunk_size
    if not isinstance(size, int) or size < 1:
        raise InputError("chunk_size", chunk_size, "must be a whole number of frames ≥ 1", "Example: --chunk-size 16")
    frames = job.frames
    # AnimateDiff chunks hold whole segments (each denoised as one piece), as video2video chunks hold whole batches.
    batch = getattr(job, "chunk_unit", None) or getattr(job, "batch_size", 1)
    if size % batch:
        # Batched matmuls are not bit-stable across batch sizes, so which frames share a GPU batch is fixed by the
        # global frame index (batch b = frames b·B … b·B+B−1); chunks must then be whole batches, or a frame's
        # pixels would depend on how the job was chunked.
        size = (size + batch - 1) // batch * batch

    # 2. Per-frame inputs: schedules, seeds, prompts, camera.
    values = evaluate_job_schedules(job)
    cadence = getattr(job, "cadence", 1)
    starts = shot_starts(job)
    shots = list(getattr(job, "shot_list", None) or [])
    bounds = list(zip(starts, (*starts[1:], frames)))  # each shot's [start, stop)
    # Cadence groups restart at each shot's start: in-betweens never cross a shot boundary.
    diffused = [(i - starts[shot_of(starts, i)]) % cadence == 0 for i in range(frames)]
    seeds = job_seeds(job, diffused)
    for shot, (start, stop) in zip(shots, bounds):
        if shot.seed_offset:
            seeds[start:stop] = (seeds[start:stop] + shot.seed_offset) % 2**32
    prompts = job_prompts(job)
    # 2D warps (+ perspective flip), or a 3D Deforum job's camera over a plane: one 3x3 matrix per frame either way.
    motion = camera_motion(
        values, width=job.width, height=job.height, mode=getattr(job, "animation_mode", "2D"),
        perspective_flip=job.motion.perspective_flip.enabled,
    )
    # Each shot's camera starts where the shot starts (a shot is a fresh sequence).
    cameras = np.concatenate([cumulative_camera(motion[start:stop]) for start, stop in bounds])

    # 3. Frame keys: everything that decides a frame's pixels, hashed.
    job_fields = job.model_dump(mode="json")
    # Where the models folder lies is not what the frames depend on: the model files' content hashes are (they come
    # in through input_hashes), so moving the folder or mounting it elsewhere on another worker re-renders nothing.
    if isinstance(job_fields.get("model"), dict):
        job_fields["model"].pop("models_dir", None)
    common = {
        "format": PLAN_FORMAT,
        "renderer": renderer,
        "job": {k: v for k, v in job_fields.items() if k not in _NOT_PIXEL_FIELDS},
        "border": job.motion.border,
        "inputs": dict(sorted((k, v) for k, v in (input_hashes or {}).items() if not k.startswith("shot@"))),
    }
    if job.kind == "animatediff":
        # A motion clip's frames are denoised together: each depends on every frame's prompt and seed and on the
        # frame count, so those enter every frame key.
        common["clip"] = {"frames": frames, "seeds": [int(s) for s in seeds],
                          "prompts": [[p.positive, p.negative] for p in prompts]}
    common_hash = canonical_hash(common)
    chained = job.kind == "deforum"
    camera_rows = [tuple(float(x) for x in cameras[i].ravel()) for i in range(frames)]
    value_lists = {name: [float(x) for x in array] for name, array in values.items()}
    count = variation_count(job)
    if count > 1:
        seeds, prompts, camera_rows, value_lists = _interleave_variations(job, seeds, prompts, camera_rows,
                                                                          value_lists)
    # What a frame's key says about its shot: nothing for the plain first shot (so a job without shots keeps its
    # keys), else the shot's start, init image (by content) and seed offset.
    shot_fields: list[dict[str, Any] | None] = []
    for shot, (start, _) in zip(shots, bounds):
        init = (input_hashes or {}).get(f"shot@{start}.init_image", shot.init_image)
        plain = start == 0 and init is None and not shot.seed_offset
        shot_fields.append(None if plain else {"start": start, "init_image": init, "seed_offset": shot.seed_offset})
    frame_keys: list[str] = []
    previous: list[str | None] = [None] * count  # each variation's previous key
    group_of = {v: list(group) for group in lockstep_groups(count) for v in group}
    for i in range(frames * count):
        t, variation = divmod(i, count)
        shot_index = shot_of(starts, t)
        if t == starts[shot_index]:
            previous[variation] = None  # a shot starts fresh: its first frame folds in no earlier frame
        fields: dict[str, Any] = {}
        if shot_fields and shot_fields[shot_index] is not None:
            fields["shot"] = shot_fields[shot_index]
        if count > 1:
            fields["variation"] = variation
            fields["lockstep_group"] = group_of[variation]
        key = canonical_hash({
            **fields,
            "common": common_hash,
            "frame": t,
            "seed": int(seeds[i]),
            "prompt": prompts[i].positive,
            "negative": prompts[i].negative,
            "values": {name: column[i] for name, column in value_lists.items()},
            "camera": camera_rows[i],
            "previous": previous[variation] if chained else None,
        })
        frame_keys.append(key)
        previous[variation] = key

    # 4. Chunks.
    chunks = []
    stored = frames * count
    stored_bounds = [(first * count, stop * count) for first, stop in bounds]
    ranges = [(shot, start, min(start + size, stop)) for shot, (first, stop) in enumerate(stored_bounds)
              for start in range(first, stop, size)] if cut_at_shots else \
        [(shot_of(starts, start // count), start, min(start + size, stored)) for start in range(0, stored, size)]
    for index, (shot, start, stop) in enumerate(ranges):
        keys = tuple(frame_keys[start:stop])
        chunks.append(ChunkSpec(
            job=job.name,
            index=index,
            start=start,
            stop=stop,
            frame_keys=keys,
            seeds=tuple(int(s) for s in seeds[start:stop]),
            prompts=tuple(p.positive for p in prompts[start:stop]),
            negative_prompts=tuple(p.negative for p in prompts[start:stop]),
            values={name: tuple(column[start:stop]) for name, column in value_lists.items()},
            camera=tuple(camera_rows[start:stop]),
            key=canonical_hash({"frames": keys}),
            shot=shot,
        ))
    return RenderPlan(
        job=job.name, kind=job.kind, renderer=renderer, width=job.width, height=job.height, fps=job.fps,
        frames=stored, seed=job.seed, chained=chained, chunk_size=size, chunks=tuple(chunks), shots=starts,
        variations=count,
    )


def _interleave_variations(job: AnyJob, seeds, prompts, camera_rows, value_lists):
    """Per-frame inputs of the timeline, repeated for every variation (stored frame ``t·V + v``), with each
    variation's seed offset and prompts applied."""
    from framefarm.animation.prompts import FramePrompt

    variations = job.variations
    count = len(variations)
    offsets = np.array([v.seed_offset for v in variations], dtype=np.int64)
    stored_seeds = ((np.asarray(seeds, dtype=np.int64)[:, None] + offsets[None, :]) % 2**32).ravel()
    stored_prompts = [FramePrompt(positive=_join(p.positive, v.positive_prompt),
                                  negative=_join(p.negative, v.negative_prompt))
                      for p in prompts for v in variations]
    rows = [row for row in camera_rows for _ in range(count)]
    columns = {name: [x for x in column for _ in range(count)] for name, column in value_lists.items()}
    return stored_seeds, stored_prompts, rows, columns


def _join(prompt: str, extra: str) -> str:
    return ", ".join(part for part in (prompt, extra) if part)
