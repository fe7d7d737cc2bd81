"""The Deforum chain: each diffused frame is img2img of the previous frame, warped by the camera — for ``kind =
"deforum"`` jobs on the diffusers backend. The img2img call itself is the core's (:mod:`..denoise`), the same one
video2video uses, so LoRAs, hypernetworks, embeddings, ControlNet and the speed levers behave alike in both.

Per diffused frame ``n`` (numbered steps in :meth:`DeforumChain._diffused`):

1. the previous output frame, warped: hybrid composite "Before Motion", the 2D matrix (zoom, angle, translation,
   perspective flip) or the 3D move over the depth of the previous frame (``framefarm.renderers.depth``), then the
   hybrid video's motion (optical flow or a perspective/affine fit of it) and the "Normal" composite;
2. legacy colour coherence (match the warped frame to the reference), grayscale, contrast, anti-blur, noise
   (``framefarm.animation.coherence``, seeded by the frame's seed);
3. img2img at the frame's strength, CFG, steps, sampler, clip skip, checkpoint and ControlNet weights (each a
   schedule), from a CPU generator seeded with the frame's seed; frame 0 is img2img of the init image, or txt2img;
4. after diffusion: colour coherence (the current default) and the "After Generation" composite.

Cadence ``c`` (Deforum's turbo, with every frame written): frames ``k·c`` are diffused (``D_k``); frame ``t`` in
``k·c … k·c+c−1`` shows ``D_{k−1}`` and ``D_k``, each warped frame by frame up to ``t``, cross-faded (or blended
along optical flow) with ``tween = (t − k·c + 1)/c``. So the last frame of a cadence group is ``D_k`` warped, and
the next diffusion starts from it, as in Deforum; the frames after the last diffused one are written too.

Resume and chunking (why frames are byte-identical however the job is cut or killed): the chain's only state is the
stored frames. A diffused frame starts from output ``n−1``, which is read back from the store when it is not in
memory (PNG is lossless). In-betweens need ``D_{k−1}`` and ``D_k``, which are not stored frames when ``c > 1``: they
are diffused again from outputs ``(k−1)·c−1`` and ``k·c−1`` — the same inputs, seeds and device give the same
pixels — costing at most two diffusions after a restart. Per-frame values come from the whole job's plan, so a chunk
can look back past its own start. Chunks of a chained job must run in order; the flow does that.

Shots (``job.shots``): each shot is its own chain. Frame numbers stay global (schedules, prompts, seeds, hybrid and
colour-reference video frames), but a shot's first frame ``s`` is diffused from the shot's init image (or txt2img),
its cadence groups are ``s + k·c``, and its ``first_frame`` colour reference is output ``s``. Nothing of one shot
reads another, so shots render side by side (the flow runs each shot's chunks in order, shots concurrently).

Variations (``job.variations``): V chains of the same animation with other seeds or prompts, rendered in lockstep.
Stored frame ``t·V + v`` is frame ``t`` of variation ``v`` (``framefarm.animation.plan``); each diffused time step
``d`` is one pipeline call per lockstep group (all V variations below 8, else groups of at most 8:
``plan.lockstep_groups``) (:meth:`DeforumChains.diffuse`): the inits are prepared (warp, colour coherence,
contrast, anti-blur, noise) on helper threads, each group's frames go through the UNet as one batch, and the next
step's noise images are made in worker processes while it runs. The groups are always the same at ``d`` — after a
restart too — so a frame's pixels never depend on chunking or on which frames a run still had to render.

Pipelining (why the GPU rarely waits for the CPU): as soon as a group's step ``d`` is finished, its step ``d + c``
is prepared and queued on the GPU, before the frames of ``d`` are handed over. With two groups the GPU works on one
while the CPU finishes and prepares the other; with one chain it diffuses the next frame while the CPU writes this
one. Only the order of the CPU's work changes: every batch holds the same frames with the same inputs.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from framefarm.animation import coherence
from framefarm.animation.camera import camera_motion, perspective_flip_matrices, warp_2d, warp_3d
from framefarm.animation.plan import ChunkSpec, lockstep_groups, shot_of, variation_count
from framefarm.animation.schedules import evaluate_string_schedules
from framefarm.errors import InputError, RenderError
from framefarm.renderers.base import RenderContext
from framefarm.renderers.diffusers.components import load_components
from framefarm.renderers.diffusers.conditioning import split_networks
from framefarm.renderers.diffusers.controls import fixed_image, unit_control_images
from framefarm.renderers.diffusers.denoise import FrameSettings, Group, denoise_group
from framefarm.renderers.diffusers.vae import resolve


def render(chunk: ChunkSpec, frames: Sequence[int], context: RenderContext) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame, RGB uint8)`` for the requested frames of a Deforum chunk, in order (see the module doc)."""
    wanted = sorted(set(frames))
    if not wanted:
        return
    chains = DeforumChains(context, horizon=wanted[-1] // variation_count(context.job))
    try:
        for frame in wanted:
            yield frame, chains.output(frame)
    finally:
        chains.close()


@dataclass
class _Batch:
    """One lockstep group's diffused step on its way through the GPU: the pixels arrive when resolved."""

    step: int
    chains: list[DeforumChain]
    images: dict[int, Any]  # stored frame -> pixels, or the PendingFrames that will hold them


class DeforumChains:
    """The chains of a job — one per variation (one for a job without) — driven in lockstep: stored frame
    ``t·V + v`` is :meth:`output` ``t`` of chain ``v``, and a diffused time step is one batch per lockstep group
    (``framefarm.animation.plan.lockstep_groups``).

    Pipelined: a group's next step is prepared and queued on the GPU as soon as its current step is finished
    (:meth:`_launch_ahead`), so the GPU works on one group (or on the next step) while the CPU finishes the other
    group's frames, prepares its inits and writes the frames. What a batch holds and computes is the same as without
    the head start: only the order of CPU work changes, never a pixel."""

    # Whether the next diffused step's noise images are made ahead, while this step diffuses (the same bytes either
    # way; the GPU benchmark compares the two in one process).
    MAKE_NOISE_AHEAD = True
    # Where several chains' noise images are made ahead: in worker processes (True) or threads. Perlin noise is
    # ~0.1 s of NumPy a 512² frame, much of it under the GIL: 16 chains' worth on threads competes with the thread
    # that drives the GPU. A single chain keeps its one helper thread (a process would cost more than it saves).
    NOISE_IN_PROCESSES = True
    # Whether a group's next step is queued on the GPU as soon as its current one is finished (same pixels; the
    # GPU benchmark compares).
    DIFFUSE_AHEAD = True
    # Seconds spent per phase of a diffused step, summed over every DeforumChains of this process (the GPU benchmark
    # reads them to show where a step's time goes): preparing inits, queueing the batches (prompts, VAE encode, the
    # sampler loop's launches), waiting for the pixels, and the after-diffusion steps.
    PHASE_SECONDS: dict[str, float] = {"prepare": 0.0, "queue": 0.0, "wait": 0.0, "finish": 0.0, "steps": 0.0}

    def __init__(self, context: RenderContext, *, noise_ahead: bool | None = None, horizon: int | None = None) -> None:
        _check_supported(context.job)
        self.inputs = ChainInputs(context)
        self.count = self.inputs.count
        self.chains = [DeforumChain(self.inputs, variation, self) for variation in range(self.count)]
        self.groups = [[self.chains[v] for v in group] for group in lockstep_groups(self.count)]
        # The last time step this render needs: no step past it is diffused ahead (a chunk's end).
        self.horizon = self.inputs.job.frames - 1 if horizon is None else horizon
        self._batches: dict[tuple[int, int], _Batch] = {}  # (group, step) -> queued ahead
        # Noise images made ahead (they depend on a frame's seed and the size only): Perlin noise is ~0.1 s of CPU a
        # frame that the chains would otherwise spend with the GPU idle. ``noise_ahead=False`` makes every noise
        # image in line (the same bytes; tests and benchmarks compare).
        self.make_noise_ahead = self.MAKE_NOISE_AHEAD if noise_ahead is None else noise_ahead
        self.noise_made_ahead: list[int] = []  # stored frames whose noise image was made ahead, for tests
        self.diffused_ahead: list[int] = []  # time steps queued ahead (per group), for tests
        workers = max(1, min(self.count, os.cpu_count() or 1, 16))
        self._noise_pool: ThreadPoolExecutor | None = None
        # Preparing inits runs on threads when there are several chains (OpenCV and NumPy release the GIL). The 3D
        # warp calls the depth model, which stays on this thread.
        self._prep_pool = ThreadPoolExecutor(workers, thread_name_prefix="deforum-prep") \
            if self.count > 1 and self.inputs.job.animation_mode == "2D" else None
        self._workers = workers

    def close(self) -> None:
        self._batches.clear()
        for pool in (self._noise_pool, self._prep_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def output(self, frame: int) -> np.ndarray:
        """Stored frame ``frame``: frame ``t`` of variation ``v``, where ``frame = t·V + v``."""
        t, variation = divmod(frame, self.count)
        return self.chains[variation].output(t)

    def queue_noise(self, chain: DeforumChain, d: int) -> Future | None:
        if not self.make_noise_ahead:
            return None
        self.noise_made_ahead.append(chain.store_frame(d))
        if self.count > 1 and self.NOISE_IN_PROCESSES:
            job = self.inputs.job
            return _noise_processes(self._workers).submit(
                coherence.noise_image, job.height, job.width, chain.seed(d), noise_type=job.noise_type,
                perlin_octaves=job.perlin_octaves, perlin_persistence=job.perlin_persistence)
        if self._noise_pool is None:
            self._noise_pool = ThreadPoolExecutor(self._workers, thread_name_prefix="deforum-noise")
        return self._noise_pool.submit(chain.noise_image, d)

    def diffuse(self, d: int) -> None:
        """Diffuse time step ``d`` of every chain: each group's batch queued (unless it was queued ahead), then
        each finished in turn, and its next step queued at once."""
        self.inputs.warm_up()  # shared inputs loaded once, on this thread, before the helpers read them
        batches = [self._batches.pop((g, d), None) or self._launch(group, d) for g, group in enumerate(self.groups)]
        for g, batch in enumerate(batches):
            self._collect(batch)
            self._launch_ahead(g, d + self.inputs.cadence)
        self.PHASE_SECONDS["steps"] += 1

    def _launch(self, chains: list[DeforumChain], d: int) -> _Batch:
        """Prepare the inits of ``chains`` at step ``d`` and queue their batch(es) on the GPU."""
        inputs = self.inputs
        began = time.perf_counter()
        for chain in chains:
            # A step nobody made noise for ahead (the first of a chunk, or after a restart): every chain's noise at
            # once, in parallel, rather than each in line on the thread preparing it.
            chain.queue_noise(d)
        starts = self._map(lambda chain: chain.prepare(d), chains)
        prepared = time.perf_counter()
        # The next step's noise is made while this step diffuses, not while the inits above are prepared: the
        # preparing threads then do not compete with the noise workers for cores.
        for chain in chains:
            chain.queue_noise(d + inputs.cadence)
        components = inputs.components_at(d)
        planned = [chain.settings(d, img2img=init is not None) for chain, init in zip(chains, starts)]
        # Chains with equal settings and the same kind of start share a call; which chains those are follows from
        # the job alone, so the batches are the same in every run.
        calls: dict[tuple[FrameSettings, bool], list[int]] = {}  # in first-seen order
        for index, (settings, _, _) in enumerate(planned):
            calls.setdefault((settings, starts[index] is None), []).append(index)
        images: dict[int, Any] = {}
        for (settings, txt2img), members in calls.items():
            frames = [chains[i].store_frame(d) for i in members]
            controls = {index: unit_control_images(components, index, unit,
                                                   [(frames[k], chains[i].control_source(index, unit, d, starts[i]),
                                                     chains[i].seed(d)) for k, i in enumerate(members)],
                                                   inputs.context.controls)
                        for index, unit, _ in components.units if settings.control_weights[index] > 0}
            group = Group(frames=frames, seeds=[chains[i].seed(d) for i in members],
                          positives=[planned[i][1] for i in members], negatives=[planned[i][2] for i in members],
                          settings=settings, init=None if txt2img else [starts[i] for i in members],
                          controls=controls)
            images.update(denoise_group(components, inputs.job, group))
        phases = self.PHASE_SECONDS
        phases["prepare"] += prepared - began
        phases["queue"] += time.perf_counter() - prepared
        return _Batch(d, chains, images)

    def _collect(self, batch: _Batch) -> None:
        """Wait for ``batch``'s pixels, then each chain's after-diffusion steps."""
        began = time.perf_counter()
        images = resolve(batch.images)
        arrived = time.perf_counter()
        d = batch.step
        finished = self._map(lambda chain: chain.finish(d, images[chain.store_frame(d)]), batch.chains)
        for chain, image in zip(batch.chains, finished):
            chain.keep_diffused(d, image)
        self.PHASE_SECONDS["wait"] += arrived - began
        self.PHASE_SECONDS["finish"] += time.perf_counter() - arrived

    def _launch_ahead(self, g: int, d: int) -> None:
        """Queue group ``g``'s step ``d`` now, if this render needs it and it continues the same shot: its inputs
        (each chain's output ``d − 1``) exist once the step before is finished."""
        inputs = self.inputs
        # (The horizon is at most the job's last time step.)
        if not self.DIFFUSE_AHEAD or d > self.horizon or d - inputs.cadence < inputs.shot_start(d):
            return
        chains = self.groups[g]
        try:
            for chain in chains:
                chain.outputs_before(d)
            self._batches[(g, d)] = self._launch(chains, d)
        except Exception:  # noqa: BLE001 - a head start only: the same work runs again where the step is needed
            # and raises there, after the frames before it are handed over (finished work first).
            return
        self.diffused_ahead.append(d)

    def _map(self, work, chains: list[DeforumChain]) -> list[Any]:
        if self._prep_pool is None:
            return [work(chain) for chain in chains]
        return list(self._prep_pool.map(work, chains))


_NOISE_PROCESSES: ProcessPoolExecutor | None = None
_NOISE_PROCESSES_LOCK = threading.Lock()


def _noise_processes(workers: int) -> ProcessPoolExecutor:
    """The process pool that makes noise images ahead for lockstep chains: one per process, kept across chunks (a
    render process renders many). Spawned, not forked: the parent holds CUDA and threads."""
    global _NOISE_PROCESSES
    with _NOISE_PROCESSES_LOCK:
        if _NOISE_PROCESSES is None:
            _NOISE_PROCESSES = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        return _NOISE_PROCESSES


class ChainInputs:
    """What every chain of a job reads alike: per-time-step values, the camera, videos, images and models."""

    def __init__(self, context: RenderContext) -> None:
        job = context.job
        self.job = job
        self.context = context
        self.cadence = job.cadence
        self.count = variation_count(job)
        # The whole job's per-frame values (seeds, prompts, schedules): a chain looks back past its chunk's start.
        self.plan = context.whole_job()
        self.shots = job.shot_list
        self.starts = tuple(shot.start for shot in self.shots)
        self.strings = evaluate_string_schedules(job)
        self.components: dict[str | None, Any] = {}

    def warm_up(self) -> None:
        """Load, on the calling thread, the shared inputs this job reads (so helper threads only read them)."""
        job = self.job
        _ = self.motion, self.flips, self.depth_model
        if job.hybrid.active:
            _ = self.hybrid_frames
        if job.color_coherence.mode != "None" and job.color_coherence.reference == "video":
            _ = self.color_reference_video
        if job.color_coherence.mode != "None" and job.color_coherence.reference == "image":
            _ = self.reference_image

    def shot_start(self, t: int) -> int:
        """First frame of the shot holding ``t``."""
        return self.starts[shot_of(self.starts, t)]

    def value(self, name: str, t: int, default: float | None = None) -> float:
        """Schedule ``name`` at time step ``t`` (the same for every variation)."""
        column = self.plan.values.get(name)
        if column is None:
            if default is None:
                raise RenderError(f"the plan has no {name!r} schedule")
            return float(default)
        return float(column[t * self.count])

    def string(self, name: str, t: int, default: str | None) -> str | None:
        column = self.strings.get(name)
        return column[t] if column is not None else default

    @cached_property
    def motion(self) -> np.ndarray:
        values = {name: np.asarray(column[::self.count], dtype=np.float64) for name, column in self.plan.values.items()}
        return camera_motion(values, width=self.job.width, height=self.job.height, mode="2D",
                             perspective_flip=self.job.motion.perspective_flip.enabled)

    @cached_property
    def flips(self) -> np.ndarray | None:
        if not self.job.motion.perspective_flip.enabled:
            return None
        v = self.plan.values
        return perspective_flip_matrices(*(np.asarray(v[f"perspective_flip.{n}"][::self.count])
                                           for n in ("theta", "phi", "gamma", "fv")),
                                         width=self.job.width, height=self.job.height)

    @cached_property
    def depth_model(self):
        from framefarm.renderers.depth import DepthModel, depth_folder
        from framefarm.renderers.preprocessors import annotator_folder

        if self.job.animation_mode != "3D" or not self.job.depth.enabled:
            return None
        return DepthModel(depth_folder(annotator_folder(self.job.model.models_dir), self.job.depth.algorithm))

    @cached_property
    def hybrid_frames(self) -> list[np.ndarray] | None:
        hybrid = self.job.hybrid
        return _video_frames(hybrid.video, self.job, "hybrid.video") if hybrid.active else None

    @cached_property
    def color_reference_video(self) -> list[np.ndarray] | None:
        cc = self.job.color_coherence
        return _video_frames(cc.video, self.job, "color_coherence.video") if cc.reference == "video" else None

    @cached_property
    def reference_image(self) -> np.ndarray:
        from framefarm.images import fit_cover, load_image

        path = self.job.color_coherence.image
        return fit_cover(load_image(path, field="color_coherence.image"), self.job.width, self.job.height)

    def components_at(self, t: int):
        """Models for time step ``t``'s checkpoint of ``checkpoint_schedule`` (process caches keep each loaded
        once)."""
        checkpoint = self.string("checkpoint_schedule", t, None)
        if checkpoint not in self.components:
            self.components[checkpoint] = load_components(self.job, checkpoint)
        return self.components[checkpoint]

    # ----- Image operations ---------------------------------------------------------------------------------------

    def warp(self, image: np.ndarray, t: int) -> np.ndarray:
        """The camera move of ``t`` applied to the image of ``t − 1`` (2D matrix, or the 3D move)."""
        job = self.job
        if job.animation_mode == "2D":
            return warp_2d(image, self.motion[t], border=job.motion.border)
        if self.flips is not None:  # in 3D the flip comes before the move, as in Deforum
            image = warp_2d(image, self.flips[t], border=job.motion.border)
        depth = self.depth_model.predict(image) if self.depth_model is not None else None
        from framefarm.renderers.depth import depth_kind

        v = lambda name: self.value(name, t)  # noqa: E731 - a local shorthand for eight look-ups
        return warp_3d(image, depth, translation=(v("translation_x"), v("translation_y"), v("translation_z")),
                       rotation=(v("rotation_3d_x"), v("rotation_3d_y"), v("rotation_3d_z")), fov=v("fov"),
                       near=v("near"), far=v("far"), aspect_ratio=v("aspect_ratio"),
                       depth_kind=depth_kind(job.depth.algorithm), sampling_mode=job.sampling_mode,
                       padding_mode=job.padding_mode)

    def composite(self, image: np.ndarray, t: int, stage: str) -> np.ndarray:
        hybrid = self.job.hybrid
        if hybrid.composite != stage:
            return image
        video = self.hybrid_frames[t]
        alpha = self.value("hybrid.comp_alpha", t, 0.5)
        return np.clip(np.rint(image * (1.0 - alpha) + video * alpha), 0, 255).astype(np.uint8)

    def hybrid_motion(self, image: np.ndarray, t: int) -> np.ndarray:
        hybrid = self.job.hybrid
        if hybrid.motion == "None" or t == 0:
            return image
        video = self.hybrid_frames
        flow = coherence.optical_flow(video[t - 1], video[t], hybrid.flow_method)
        flow = flow * np.float32(self.value("hybrid.flow_factor", t, 1.0))
        if hybrid.motion == "Optical Flow":
            return coherence.warp_by_flow(image, flow, border=self.job.motion.border)
        # Perspective / Affine: a RANSAC fit of the video's flow on a grid of points (OpenCV), then a 2D warp.
        height, width = flow.shape[:2]
        ys, xs = np.mgrid[0:height:8, 0:width:8]
        src = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
        dst = src + flow[ys.ravel(), xs.ravel()]
        if hybrid.motion == "Perspective":
            matrix, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
        else:
            affine, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
            matrix = None if affine is None else np.vstack([affine, [0.0, 0.0, 1.0]])
        return image if matrix is None else warp_2d(image, matrix, border=self.job.motion.border)

    def init_image(self, start: int) -> np.ndarray | None:
        """The first frame's start image of the shot starting at ``start``: the shot's ``init_image``, the job's
        for the shot at frame 0, the hybrid video's frame ``start``; ``None`` means txt2img."""
        from framefarm.images import fit_cover, load_image

        shot = self.shots[shot_of(self.starts, start)]
        listed = [i for i, s in enumerate(self.job.shots) if s.start == start]  # its index in the job's `shots`
        path, field = shot.init_image, f"shots.{listed[0] if listed else 0}.init_image"
        if path is None and start == 0:
            path, field = self.job.init_image, "init_image"
        if path:
            return fit_cover(load_image(path, field=field), self.job.width, self.job.height)
        if self.job.hybrid.active and self.job.hybrid.use_first_frame_as_init_image:
            return self.hybrid_frames[start]
        return None


class DeforumChain:
    """One chain (one variation): frame ``t`` of it is stored frame ``t·V + variation``. Memoises outputs, diffused
    frames (by time step) and warped in-between sources; everything else is recomputed from the store on demand."""

    def __init__(self, inputs: ChainInputs, variation: int, chains: DeforumChains) -> None:
        self.inputs = inputs
        self.job = inputs.job
        self.variation = variation
        self.chains = chains
        self.cadence = inputs.cadence
        self.outputs: dict[int, np.ndarray] = {}
        self.diffused: dict[int, np.ndarray] = {}
        self.warped: dict[int, tuple[int, np.ndarray]] = {}  # diffused step d -> (step warped to, image)
        self.noise_ahead: dict[int, Future] = {}

    def store_frame(self, t: int) -> int:
        """The stored frame number of this chain's frame ``t``."""
        return t * self.inputs.count + self.variation

    def seed(self, t: int) -> int:
        return int(self.inputs.plan.seeds[self.store_frame(t)])

    # ----- Outputs ------------------------------------------------------------------------------------------------

    def previous_output(self, t: int) -> np.ndarray:
        """Output ``t`` from memory or, after a restart or in a later chunk, from the store."""
        if t in self.outputs:
            return self.outputs[t]
        previous_frame = self.inputs.context.previous_frame
        if previous_frame is None:
            raise RenderError("the Deforum chain needs the stored frames (RenderContext.previous_frame)")
        image = previous_frame(self.store_frame(t))
        self.outputs[t] = image
        return image

    def outputs_before(self, d: int) -> None:
        """Make the outputs that preparing step ``d`` reads — output ``d − 1``, and the shot's first (the colour
        reference) where this run diffused it — right after step ``d − c`` is finished, before its frames are in the
        store. Both come from diffused frames in memory: nothing is diffused again."""
        start = self.inputs.shot_start(d)
        if start in self.diffused and start not in self.outputs:
            self.output(start)
        self.output(d - 1)

    def output(self, t: int) -> np.ndarray:
        """Output frame ``t``: ``D_k`` warped to ``t``, cross-faded with ``D_{k−1}`` warped to ``t`` in a cadence
        (``k`` counts the cadence groups of ``t``'s shot; diffused frame ``D_k`` is frame ``s + k·c``)."""
        inputs = self.inputs
        s, c = inputs.shot_start(t), self.cadence
        k = (t - s) // c
        tween = (t - s - k * c + 1) / c
        current = self._warped_to(s + k * c, t)
        if k == 0 or tween >= 1.0:
            image = current
        else:
            before = self._warped_to(s + (k - 1) * c, t)
            if self.job.cadence_flow == "None":
                image = coherence.cadence_blend(before, current, tween)
            else:
                image = coherence.cadence_flow_blend(before, current, tween, method=self.job.cadence_flow,
                                                     flow_factor=inputs.value("cadence_flow_factor", t, 1.0),
                                                     border=self.job.motion.border)
        self.outputs[t] = image
        # Only recent outputs are read again (the previous frame, the shot's first frame as colour reference):
        # keep memory flat.
        for old in [f for f in self.outputs if f != s and f < t - 1]:
            del self.outputs[old]
        return image

    def _warped_to(self, d: int, t: int) -> np.ndarray:
        """Diffused frame ``d`` warped frame by frame from ``d`` to ``t`` (always the same sequence of warps, so a
        resumed render gets the same pixels as one that kept it in memory)."""
        reached, image = self.warped.get(d, (d, None))
        if image is None or reached > t:
            reached, image = d, self.diffused_frame(d)
        for frame in range(reached + 1, t + 1):
            image = self.inputs.warp(image, frame)
        self.warped[d] = (t, image)
        for old in [j for j in self.warped if j < d - self.cadence]:
            del self.warped[old]
        return image

    def diffused_frame(self, d: int) -> np.ndarray:
        """``D`` at step ``d`` (a shot's start or ``c`` steps after a diffused one), diffused once, in lockstep
        with every other chain of the job."""
        if d not in self.diffused:
            self.chains.diffuse(d)
        return self.diffused[d]

    def keep_diffused(self, d: int, image: np.ndarray) -> None:
        self.diffused[d] = image
        for old in [j for j in self.diffused if j < d - self.cadence]:
            del self.diffused[old]

    # ----- One diffused frame -------------------------------------------------------------------------------------

    def noise_image(self, d: int) -> np.ndarray:
        job = self.job
        return coherence.noise_image(job.height, job.width, self.seed(d), noise_type=job.noise_type,
                                     perlin_octaves=job.perlin_octaves, perlin_persistence=job.perlin_persistence)

    def queue_noise(self, d: int) -> None:
        """Start step ``d``'s noise image on a helper (thread or process), if ``d`` is in the same shot as
        ``d − c`` (a shot's first frame may be txt2img, which has no noise) and has noise."""
        inputs = self.inputs
        if (d in self.noise_ahead or d >= self.job.frames or d - self.cadence < inputs.shot_start(d)
                or inputs.value("noise", d) == 0):
            return
        future = self.chains.queue_noise(self, d)
        if future is not None:
            self.noise_ahead[d] = future

    def color_reference(self, t: int) -> np.ndarray | None:
        inputs = self.inputs
        cc = self.job.color_coherence
        if cc.mode == "None":
            return None
        if cc.reference == "image":
            return inputs.reference_image
        if cc.reference == "video":
            frames = inputs.color_reference_video
            return frames[min(coherence.color_reference_index(t, cc.video_every_n), len(frames) - 1)]
        start = inputs.shot_start(t)
        return self.previous_output(start) if t > start else None

    def prepare(self, n: int) -> np.ndarray | None:
        """Steps 1–2 of diffused frame ``n`` (module doc): its start image, or ``None`` for txt2img."""
        inputs, job = self.inputs, self.job
        ahead = self.noise_ahead.pop(n, None)
        # 1. The image to start from: the warped previous output (with hybrid video), or the shot's init image at
        # the shot's first frame.
        if n == inputs.shot_start(n):
            init = inputs.init_image(n)
        else:
            init = inputs.composite(self.previous_output(n - 1), n - 1, "Before Motion")
            init = inputs.warp(init, n)
            init = inputs.hybrid_motion(init, n)
            init = inputs.composite(init, n, "Normal")
        if init is None:
            return None
        # 2. Coherence operations, in Deforum's order.
        reference = self.color_reference(n)
        if job.color_coherence.legacy and reference is not None:
            init = coherence.match_colors(init, reference, job.color_coherence.mode)
        if job.color_coherence.force_grayscale:
            init = coherence.force_grayscale(init)
        v = inputs.value
        init = coherence.adjust_contrast(init, v("contrast", n))
        init = coherence.unsharp_mask(init, int(v("anti_blur.kernel", n)), v("anti_blur.sigma", n),
                                      v("anti_blur.amount", n), v("anti_blur.threshold", n))
        return coherence.add_noise(init, v("noise", n), self.seed(n), noise_type=job.noise_type,
                                   perlin_octaves=job.perlin_octaves, perlin_persistence=job.perlin_persistence,
                                   noise=ahead.result() if ahead is not None else None)

    def finish(self, n: int, image: np.ndarray) -> np.ndarray:
        """Step 4 of diffused frame ``n``: colour coherence after generation, grayscale, the last composite."""
        job = self.job
        reference = self.color_reference(n)
        if not job.color_coherence.legacy and reference is not None:
            image = coherence.match_colors(image, reference, job.color_coherence.mode)
        if job.color_coherence.force_grayscale:
            image = coherence.force_grayscale(image)
        return self.inputs.composite(image, n, "After Generation")

    def settings(self, n: int, *, img2img: bool) -> tuple[FrameSettings, str, str]:
        """Frame ``n``'s scheduled settings and this variation's prompts without extra-network tags."""
        inputs, job, refs = self.inputs, self.job, self.job.model
        plan, stored = inputs.plan, self.store_frame(n)
        positive, negative, networks = split_networks(plan.prompts[stored], plan.negative_prompts[stored])
        weights = tuple(inputs.value(f"controlnet.{index}.weight", n, unit.weight)
                        for index, unit in enumerate(job.controlnet))
        settings = FrameSettings(strength=inputs.value("strength", n) if img2img else 1.0,
                                 cfg=inputs.value("cfg_scale", n, refs.cfg_scale),
                                 steps=int(inputs.value("steps", n, refs.steps)),
                                 sampler=inputs.string("sampler_schedule", n, refs.sampler),
                                 clip_skip=int(inputs.value("clip_skip", n, refs.clip_skip)),
                                 control_weights=weights, networks=networks)
        return settings, positive, negative

    def control_source(self, index: int, unit, n: int, init: np.ndarray | None) -> np.ndarray:
        """What unit ``index``'s preprocessor reads for frame ``n``: its fixed ``image``, else the hybrid video
        frame, else the warped input frame."""
        source = fixed_image(self.job, index, unit)
        if source is None and self.inputs.hybrid_frames is not None:
            source = self.inputs.hybrid_frames[n]
        elif source is None:
            source = init
        if source is None:
            raise InputError(f"controlnet.{index}.image",
                             problem="is needed for frame 0 (or a shot's first frame) of a Deforum job without an "
                             "init image or hybrid video (there is no frame yet to make a control image from)",
                             fix="Set the unit's image, or init_image")
        return source


def _check_supported(job) -> None:
    """Refuse, before any GPU time, the Deforum options this chain does not render (rather than ignoring them)."""
    if job.cadence_flow == "RAFT":
        raise InputError("cadence_flow", "RAFT", "needs a RAFT model, which framefarm does not load yet",
                         'Use "DIS Medium", "DIS Fine" or "Farneback"')
    hybrid = job.hybrid
    if hybrid.motion != "None" and hybrid.flow_method == "RAFT":
        raise InputError("hybrid.flow_method", "RAFT", "needs a RAFT model, which framefarm does not load yet",
                         'Use "DIS Medium", "DIS Fine" or "Farneback"')
    if hybrid.composite != "None" and hybrid.comp_mask_type != "None":
        raise InputError("hybrid.comp_mask_type", hybrid.comp_mask_type, "is not rendered yet",
                         'Set it to "None" (the video is blended in with comp_alpha everywhere)')


def _video_frames(path: str, job, field: str) -> list[np.ndarray]:
    """The first ``job.frames`` frames of a video file or frame folder at the job's size and fps."""
    from framefarm.images import fit_cover, load_image
    from framefarm.video import decode_frames

    folder = Path(path)
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        frames = [fit_cover(load_image(p, field=field), job.width, job.height) for p in files[: job.frames]]
    elif folder.is_file():
        frames = []
        for image in decode_frames(path, width=job.width, height=job.height, fps=job.fps):
            frames.append(np.ascontiguousarray(image))
            if len(frames) == job.frames:
                break
    else:
        raise InputError(field, path, "no such video file or frame folder", "Give a video ffmpeg reads or a folder")
    if len(frames) < job.frames:
        raise InputError(field, path, f"has {len(frames)} frame(s) at {job.fps:g} fps, the job needs {job.frames}",
                         f"Use a longer video or set frames = {len(frames)}")
    return frames
