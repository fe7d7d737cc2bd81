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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from framefarm.animation import coherence
from framefarm.animation.camera import camera_motion, perspective_flip_matrices, warp_2d, warp_3d
from framefarm.animation.plan import ChunkSpec, shot_of
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
    chain = DeforumChain(context)
    try:
        for frame in sorted(set(frames)):
            yield frame, chain.output(frame)
    finally:
        chain.close()


class DeforumChain:
    """The chains of a job's shots. Memoises outputs, diffused frames (by their frame number) and warped
    in-between sources; everything else is recomputed from the store on demand."""

    # Whether a chain makes the next diffused frame's noise image on a helper thread (the same bytes either way; the
    # GPU benchmark compares the two in one process).
    MAKE_NOISE_AHEAD = True

    def __init__(self, context: RenderContext, *, noise_ahead: bool | None = None) -> None:
        job = context.job
        self.job = job
        self.context = context
        self.cadence = job.cadence
        # The whole job's per-frame values (seeds, prompts, schedules): a chain looks back past its chunk's start.
        self.plan = context.whole_job()
        self.shots = job.shot_list
        self.starts = tuple(shot.start for shot in self.shots)
        self.strings = evaluate_string_schedules(job)
        self.outputs: dict[int, np.ndarray] = {}
        self.diffused: dict[int, np.ndarray] = {}
        self.warped: dict[int, tuple[int, np.ndarray]] = {}  # diffused frame d -> (frame warped to, image)
        self.components: dict[str | None, Any] = {}
        # Noise images made ahead on a helper thread (they depend on a frame's seed and the size only): Perlin noise
        # is ~0.1 s of CPU a frame that a sequential chain would otherwise spend with the GPU idle.
        # ``noise_ahead=False`` makes every noise image in line (the same bytes; tests and benchmarks compare).
        self.make_noise_ahead = self.MAKE_NOISE_AHEAD if noise_ahead is None else noise_ahead
        self.noise_ahead: dict[int, Future] = {}
        self.noise_made_ahead: list[int] = []  # diffused frames whose noise image was made ahead, for tests
        self.helper: ThreadPoolExecutor | None = None
        _check_supported(job)

    def close(self) -> None:
        if self.helper is not None:
            self.helper.shutdown(wait=False, cancel_futures=True)

    # ----- Per-frame values ---------------------------------------------------------------------------------------

    def shot_start(self, frame: int) -> int:
        """First frame of the shot holding ``frame``."""
        return self.starts[shot_of(self.starts, frame)]

    def value(self, name: str, frame: int, default: float | None = None) -> float:
        column = self.plan.values.get(name)
        if column is None:
            if default is None:
                raise RenderError(f"the plan has no {name!r} schedule")
            return float(default)
        return float(column[frame])

    def string(self, name: str, frame: int, default: str | None) -> str | None:
        column = self.strings.get(name)
        return column[frame] if column is not None else default

    @cached_property
    def motion(self) -> np.ndarray:
        values = {name: np.asarray(column, dtype=np.float64) for name, column in self.plan.values.items()}
        return camera_motion(values, width=self.job.width, height=self.job.height, mode="2D",
                             perspective_flip=self.job.motion.perspective_flip.enabled)

    @cached_property
    def flips(self) -> np.ndarray | None:
        if not self.job.motion.perspective_flip.enabled:
            return None
        v = self.plan.values
        return perspective_flip_matrices(*(np.asarray(v[f"perspective_flip.{n}"]) for n in ("theta", "phi", "gamma",
                                                                                              "fv")),
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

    # ----- Outputs ------------------------------------------------------------------------------------------------

    def previous_output(self, frame: int) -> np.ndarray:
        """Output ``frame`` from memory or, after a restart or in a later chunk, from the store."""
        if frame in self.outputs:
            return self.outputs[frame]
        if self.context.previous_frame is None:
            raise RenderError("the Deforum chain needs the stored frames (RenderContext.previous_frame)")
        image = self.context.previous_frame(frame)
        self.outputs[frame] = image
        return image

    def output(self, t: int) -> np.ndarray:
        """Output frame ``t``: ``D_k`` warped to ``t``, cross-faded with ``D_{k−1}`` warped to ``t`` in a cadence
        (``k`` counts the cadence groups of ``t``'s shot; diffused frame ``D_k`` is frame ``s + k·c``)."""
        s, c = self.shot_start(t), self.cadence
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
                                                     flow_factor=self.value("cadence_flow_factor", t, 1.0),
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
            image = self.warp(image, frame)
        self.warped[d] = (t, image)
        for old in [j for j in self.warped if j < d - self.cadence]:
            del self.warped[old]
        return image

    def diffused_frame(self, d: int) -> np.ndarray:
        """``D`` at frame ``d`` (a shot's start or ``c`` frames after a diffused frame), diffused once."""
        if d not in self.diffused:
            self.diffused[d] = self._diffused(d)
            for old in [j for j in self.diffused if j < d - self.cadence]:
                del self.diffused[old]
        return self.diffused[d]

    # ----- Image operations ---------------------------------------------------------------------------------------

    def warp(self, image: np.ndarray, frame: int) -> np.ndarray:
        """The camera move of ``frame`` applied to the image of ``frame − 1`` (2D matrix, or the 3D move)."""
        job = self.job
        if job.animation_mode == "2D":
            return warp_2d(image, self.motion[frame], border=job.motion.border)
        if self.flips is not None:  # in 3D the flip comes before the move, as in Deforum
            image = warp_2d(image, self.flips[frame], border=job.motion.border)
        depth = self.depth_model.predict(image) if self.depth_model is not None else None
        from framefarm.renderers.depth import depth_kind

        v = lambda name: self.value(name, frame)  # noqa: E731 - a local shorthand for eight look-ups
        return warp_3d(image, depth, translation=(v("translation_x"), v("translation_y"), v("translation_z")),
                       rotation=(v("rotation_3d_x"), v("rotation_3d_y"), v("rotation_3d_z")), fov=v("fov"),
                       near=v("near"), far=v("far"), aspect_ratio=v("aspect_ratio"),
                       depth_kind=depth_kind(job.depth.algorithm), sampling_mode=job.sampling_mode,
                       padding_mode=job.padding_mode)

    def color_reference(self, frame: int) -> np.ndarray | None:
        cc = self.job.color_coherence
        if cc.mode == "None":
            return None
        if cc.reference == "image":
            return self.reference_image
        if cc.reference == "video":
            frames = self.color_reference_video
            return frames[min(coherence.color_reference_index(frame, cc.video_every_n), len(frames) - 1)]
        start = self.shot_start(frame)
        return self.previous_output(start) if frame > start else None

    @cached_property
    def reference_image(self) -> np.ndarray:
        from framefarm.images import fit_cover, load_image

        path = self.job.color_coherence.image
        return fit_cover(load_image(path, field="color_coherence.image"), self.job.width, self.job.height)

    def _composite(self, image: np.ndarray, frame: int, stage: str) -> np.ndarray:
        hybrid = self.job.hybrid
        if hybrid.composite != stage:
            return image
        video = self.hybrid_frames[frame]
        alpha = self.value("hybrid.comp_alpha", frame, 0.5)
        return np.clip(np.rint(image * (1.0 - alpha) + video * alpha), 0, 255).astype(np.uint8)

    def _hybrid_motion(self, image: np.ndarray, frame: int) -> np.ndarray:
        hybrid = self.job.hybrid
        if hybrid.motion == "None" or frame == 0:
            return image
        video = self.hybrid_frames
        flow = coherence.optical_flow(video[frame - 1], video[frame], hybrid.flow_method)
        flow = flow * np.float32(self.value("hybrid.flow_factor", frame, 1.0))
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

    # ----- One diffused frame -------------------------------------------------------------------------------------

    def _noise_image(self, n: int) -> np.ndarray:
        job = self.job
        return coherence.noise_image(job.height, job.width, self.plan.seeds[n], noise_type=job.noise_type,
                                     perlin_octaves=job.perlin_octaves, perlin_persistence=job.perlin_persistence)

    def _queue_noise(self, n: int) -> None:
        """Start diffused frame ``n``'s noise image on the helper thread, if ``n`` is in the same shot as ``n − c``
        and has noise."""
        c = self.cadence
        if (not self.make_noise_ahead or n in self.noise_ahead or n >= self.job.frames or self.shot_start(n) != self.shot_start(n - c)
                or self.value("noise", n) == 0):
            return
        if self.helper is None:
            self.helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deforum-noise")
        self.noise_ahead[n] = self.helper.submit(self._noise_image, n)
        self.noise_made_ahead.append(n)

    def _diffused(self, n: int) -> np.ndarray:
        job = self.job
        seed = self.plan.seeds[n]
        self._queue_noise(n + self.cadence)  # made while this frame diffuses
        ahead = self.noise_ahead.pop(n, None)
        # 1. The image to start from: the warped previous output (with hybrid video), or the shot's init image at
        # the shot's first frame.
        if n == self.shot_start(n):
            init = self.init_image(n)
        else:
            init = self._composite(self.previous_output(n - 1), n - 1, "Before Motion")
            init = self.warp(init, n)
            init = self._hybrid_motion(init, n)
            init = self._composite(init, n, "Normal")
        # 2. Coherence operations, in Deforum's order.
        if init is not None:
            reference = self.color_reference(n)
            if job.color_coherence.legacy and reference is not None:
                init = coherence.match_colors(init, reference, job.color_coherence.mode)
            if job.color_coherence.force_grayscale:
                init = coherence.force_grayscale(init)
            init = coherence.adjust_contrast(init, self.value("contrast", n))
            init = coherence.unsharp_mask(init, int(self.value("anti_blur.kernel", n)), self.value("anti_blur.sigma", n),
                                          self.value("anti_blur.amount", n), self.value("anti_blur.threshold", n))
            init = coherence.add_noise(init, self.value("noise", n), seed, noise_type=job.noise_type,
                                       perlin_octaves=job.perlin_octaves, perlin_persistence=job.perlin_persistence,
                                       noise=ahead.result() if ahead is not None else None)
        # 3. Diffusion.
        image = self._diffuse(n, init)
        # 4. After diffusion.
        reference = self.color_reference(n)
        if not job.color_coherence.legacy and reference is not None:
            image = coherence.match_colors(image, reference, job.color_coherence.mode)
        if job.color_coherence.force_grayscale:
            image = coherence.force_grayscale(image)
        return self._composite(image, n, "After Generation")

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

    def _components(self, checkpoint: str | None):
        """Models for a checkpoint of ``checkpoint_schedule`` (process caches keep each loaded once)."""
        if checkpoint not in self.components:
            self.components[checkpoint] = load_components(self.job, checkpoint)
        return self.components[checkpoint]

    def settings(self, n: int, *, img2img: bool) -> tuple[FrameSettings, str, str]:
        """Frame ``n``'s scheduled settings and its prompts without extra-network tags."""
        job, refs = self.job, self.job.model
        positive, negative, networks = split_networks(self.plan.prompts[n], self.plan.negative_prompts[n])
        weights = tuple(self.value(f"controlnet.{index}.weight", n, unit.weight)
                        for index, unit in enumerate(job.controlnet))
        settings = FrameSettings(strength=self.value("strength", n) if img2img else 1.0,
                                 cfg=self.value("cfg_scale", n, refs.cfg_scale),
                                 steps=int(self.value("steps", n, refs.steps)),
                                 sampler=self.string("sampler_schedule", n, refs.sampler),
                                 clip_skip=int(self.value("clip_skip", n, refs.clip_skip)),
                                 control_weights=weights, networks=networks)
        return settings, positive, negative

    def _diffuse(self, n: int, init: np.ndarray | None) -> np.ndarray:
        """img2img of ``init`` (txt2img when ``None``) with frame ``n``'s scheduled settings, seed-locked: one
        frame of one chain through the shared group call."""
        components = self._components(self.string("checkpoint_schedule", n, None))
        settings, positive, negative = self.settings(n, img2img=init is not None)
        controls = {i: [self._control_image(components, i, unit, n, init)] for i, unit, _ in components.units
                    if settings.control_weights[i] > 0}
        group = Group(frames=[n], seeds=[self.plan.seeds[n]], positives=[positive], negatives=[negative],
                      settings=settings, init=None if init is None else [init], controls=controls)
        return resolve(denoise_group(components, self.job, group))[n]

    def _control_image(self, components, index: int, unit, n: int, init: np.ndarray | None) -> np.ndarray:
        """A unit's control image: its fixed ``image``, else the hybrid video frame, else the warped input frame."""
        source = fixed_image(self.job, index, unit)
        if source is None and self.hybrid_frames is not None:
            source = self.hybrid_frames[n]
        elif source is None:
            source = init
        if source is None:
            raise InputError(f"controlnet.{index}.image",
                             problem="is needed for frame 0 (or a shot's first frame) of a Deforum job without an "
                             "init image or hybrid video (there is no frame yet to make a control image from)",
                             fix="Set the unit's image, or init_image")
        return unit_control_images(components, index, unit, [(n, source, self.plan.seeds[n])],
                                   self.context.controls)[0]


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
