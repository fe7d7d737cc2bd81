"""The render job's schema: the pydantic models of a frozen, validated, serialisable description of one animation.

Three kinds share the common fields and add their own:

* ``deforum``      — keyframe animation: each frame is img2img of the warped previous frame.
* ``animatediff``  — motion-module clips in 16-frame context windows.
* ``video2video``  — img2img frame batches over a source video.

A new job field goes here. Reading job files and presets is :mod:`framefarm.job.loading`, ``--set`` overrides
:mod:`framefarm.job.overrides`, and turning a pydantic error into one readable message
:mod:`framefarm.job.validation_errors`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    field_validator,
    model_serializer,
    model_validator,
)

from framefarm.errors import InputError

# Job names become folder names under the output root: keep them to a safe, portable alphabet so a name can never
# climb out of its root ("../x") or collide on case-insensitive file systems in surprising ways.
JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"

Kind = Literal["deforum", "animatediff", "video2video"]
KINDS: tuple[str, ...] = ("deforum", "animatediff", "video2video")


class _Spec(BaseModel):
    """Shared config: frozen (hashable, safe to pass between tasks) and strict about unknown keys (typos)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class ModelRefs(_Spec):
    """Which weights and sampler render the frames. Paths are relative to the models folder (or absolute).

    ``models_dir`` is the A1111-style models folder (default: ``$FRAMEFARM_MODELS``); ``checkpoint`` a file or
    diffusers folder in it (or a hub id already in the local Hugging Face cache); ``vae`` a named VAE override;
    ``sampler`` an A1111 sampler name (``framefarm.renderers.samplers``); ``dtype`` the compute precision
    (``auto``: float16 on a GPU, float32 on a CPU); ``allow_pickle`` opts in to pickle weights (``.ckpt``/``.pt``),
    loaded with ``torch.load(weights_only=True)`` only.
    """

    checkpoint: str | None = None
    vae: str | None = None
    sampler: str = "Euler a"
    steps: Annotated[int, Field(ge=1, le=500)] = 20
    cfg_scale: Annotated[float, Field(ge=0.0, le=50.0)] = 7.0
    clip_skip: Annotated[int, Field(ge=1, le=12)] = 1
    models_dir: str | None = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    allow_pickle: bool = False

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        from framefarm.renderers.samplers import find_sampler  # light: no torch, no diffusers

        return find_sampler(value).name


class ControlNetUnit(_Spec):
    """One ControlNet unit: a model, the preprocessor that makes its control image, and how strongly it guides."""

    model: str
    preprocessor: str = "none"
    weight: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    guidance_start: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    guidance_end: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    weight_schedule: str | None = None
    image: str | None = None
    threshold_a: float | None = None
    threshold_b: float | None = None

    @model_validator(mode="after")
    def _start_before_end(self) -> ControlNetUnit:
        if self.guidance_start > self.guidance_end:
            raise ValueError(
                f"guidance_start ({self.guidance_start}) must not be after guidance_end ({self.guidance_end})"
            )
        return self


class PerspectiveFlip(_Spec):
    """Deforum's perspective flip: every frame, the image is tilted in 3D and seen through a perspective camera.

    Applied on top of the camera move: in 2D after zoom, angle and translation (framefarm keeps the translation,
    which Deforum drops when the flip is on); in 3D before the 3D move. Schedules, in degrees per frame, so a
    constant tilt keeps turning: ``phi`` about the horizontal axis, ``gamma`` about the vertical axis, ``theta`` in
    the image plane; ``fv`` is the viewing camera's field of view (0 < fv < 180; smaller is a stronger perspective).
    """

    enabled: bool = False
    theta: str = "0:(0)"
    phi: str = "0:(0)"
    gamma: str = "0:(0)"
    fv: str = "0:(53)"


class AntiBlur(_Spec):
    """Deforum's anti-blur: an unsharp mask on the warped previous frame before img2img (``amount`` 0 is off).

    ``kernel`` is the Gaussian's size in pixels (truncated to a whole number, which must be odd and ≥ 1 wherever
    ``amount`` > 0), ``sigma`` its standard deviation, and pixels whose difference from the blurred image is under
    ``threshold`` (0–255) are left unsharpened. Defaults are Deforum's.
    """

    amount: str = "0:(0.1)"
    kernel: str = "0:(5)"
    sigma: str = "0:(1.0)"
    threshold: str = "0:(0)"


class Motion(_Spec):
    """Deforum keyframe schedules (``"0:(1.0), 60:(1.04*sin(t/8))"``), evaluated per frame.

    Camera, 2D (and every kind that is not a 3D Deforum job): ``zoom``, ``angle`` (degrees), ``translation_x/y``
    (pixels) about ``transform_center_x/y`` (fractions of the frame), with ``perspective_flip`` on top. Camera, 3D
    Deforum jobs (``animation_mode = "3D"``), as Deforum: ``translation_x/y/z`` (Deforum units, 200 = the depth of
    the scene's plane) and ``rotation_3d_x/y/z`` (degrees), seen through ``fov`` (degrees) with ``aspect_ratio``;
    ``near`` and ``far`` are checked (0 < near < far) but, as in Deforum, do not change the picture. Every camera
    value is a per-frame move, so moves accumulate. Image ops: ``strength`` (how much of the previous frame is kept,
    0–1), ``noise`` (0–1), ``contrast``, ``anti_blur``. Model: ``cfg_scale``, ``steps``, ``clip_skip`` (``None``:
    the ``model`` table's value); ``steps``, ``clip_skip`` and ``anti_blur.kernel`` are truncated to whole numbers,
    as Deforum's ``int()``. ``interpolation`` fills frames between keyframes. Defaults keep the camera still.
    """

    zoom: str = "0:(1.0)"
    angle: str = "0:(0)"
    translation_x: str = "0:(0)"
    translation_y: str = "0:(0)"
    translation_z: str = "0:(0)"
    rotation_3d_x: str = "0:(0)"
    rotation_3d_y: str = "0:(0)"
    rotation_3d_z: str = "0:(0)"
    transform_center_x: str = "0:(0.5)"
    transform_center_y: str = "0:(0.5)"
    fov: str = "0:(70)"
    near: str = "0:(200)"
    far: str = "0:(10000)"
    aspect_ratio: str = "0:(1)"
    perspective_flip: PerspectiveFlip = PerspectiveFlip()
    strength: str = "0:(0.65)"
    noise: str = "0:(0.02)"
    contrast: str = "0:(1.0)"
    anti_blur: AntiBlur = AntiBlur()
    cfg_scale: str | None = None
    steps: str | None = None
    clip_skip: str | None = None
    border: Literal["replicate", "wrap"] = "replicate"
    interpolation: Literal["linear", "quadratic", "cubic"] = "linear"

    def schedules(self) -> dict[str, str]:
        """The numeric schedules by value name; nested ones dotted (``anti_blur.kernel``); optional ones when set."""
        names = ("zoom", "angle", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
                 "rotation_3d_z", "transform_center_x", "transform_center_y", "fov", "near", "far", "aspect_ratio",
                 "strength", "noise", "contrast", "cfg_scale", "steps", "clip_skip")
        out = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        out.update({f"perspective_flip.{name}": getattr(self.perspective_flip, name)
                    for name in ("theta", "phi", "gamma", "fv")})
        out.update({f"anti_blur.{name}": getattr(self.anti_blur, name)
                    for name in ("amount", "kernel", "sigma", "threshold")})
        return out


class SeedPolicy(_Spec):
    """How the seed moves from frame to frame (Deforum's ``seed_behavior``), decided at plan time.

    ``iter_n`` is Deforum's ``seed_iter_N``. ``schedule`` is read only by ``behavior = "schedule"`` (like Deforum's
    ``seed_schedule``): a numeric schedule where ``s`` is the job seed and ``-1`` a random seed drawn from the job
    seed; unset, it is Deforum's default ``0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)``.
    """

    behavior: Literal["iter", "fixed", "random", "ladder", "alternate", "schedule"] = "iter"
    iter_n: Annotated[int, Field(ge=1)] = 1
    schedule: str | None = None


class Output(_Spec):
    """What the finishing stage writes (``framefarm.video.finish``; docs/finishing.md has the details).

    ``codec`` picks the deliverable (H.264/H.265 MP4, ProRes 422 HQ/4444, HAP/HAP Q/HAP Alpha, DNxHR HQ, WebM VP9,
    GIF, PNG sequence). A ``loop`` is closed by ``loop_close`` (``crossfade`` dissolves ``loop_frames`` tail frames
    into the head, ``match`` cuts at the tail frame closest to frame 0) and interpolated across its wrap pair;
    with ``bpm`` the result must be a whole number of beats (exactly ``beats`` when given), and the file name
    carries both. ``upscale`` is ``"2"``, ``"lanczos:2"`` or an ESRGAN-family weight file; ``interpolate`` is a
    factor (2 doubles the frame rate); ``audio`` is muxed from ``audio_offset`` seconds and cut to the frames.
    ``source_audio``: a job with a ``source`` video that has sound gets that sound (cut like the frames) when
    ``audio`` is not set; ``false`` leaves the video silent. Formats without sound (GIF, PNG) skip it.
    """

    codec: Literal["h264", "h265", "prores", "prores4444", "hap", "hapq", "hapalpha", "dnxhr", "webm", "gif",
                   "png"] = "h264"
    crf: Annotated[int, Field(ge=0, le=51)] = 18
    encoder_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    loop: bool = False
    loop_close: Literal["none", "crossfade", "match"] = "none"
    loop_frames: Annotated[int, Field(ge=0, le=10_000)] = 0
    bpm: Annotated[float, Field(gt=0, le=999)] | None = None
    beats: Annotated[int, Field(ge=1, le=100_000)] | None = None
    audio: str | None = None
    audio_offset: Annotated[float, Field(ge=-86_400, le=86_400)] = 0.0
    source_audio: bool = True
    upscale: str | None = None
    interpolate: Annotated[int, Field(ge=1, le=16)] = 1
    interpolate_method: Literal["flow", "minterpolate", "rife"] = "flow"
    interpolate_model: str | None = None
    width: Annotated[int, Field(ge=16, le=16384)] | None = None
    height: Annotated[int, Field(ge=16, le=16384)] | None = None

    @field_validator("upscale")
    @classmethod
    def _upscale_spec(cls, value: str | None) -> str | None:
        from framefarm.video.upscale import parse_upscale

        parse_upscale(value, field="output.upscale", check_file=False)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Output:
        if self.loop_close != "none" and not self.loop:
            raise ValueError(f"loop_close = {self.loop_close!r} needs loop = true")
        if self.beats is not None and self.bpm is None:
            raise ValueError("beats needs bpm (e.g. bpm = 128)")
        if self.interpolate_method == "rife" and not self.interpolate_model:
            raise ValueError('interpolate_method = "rife" needs interpolate_model (a TorchScript export of RIFE)')
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height of the output, or neither")
        return self


class Source(_Spec):
    """A source video for video-to-video: a file ffmpeg reads, a folder of frames, or ``"testcard"``.

    ``"testcard"`` is a built-in moving test pattern, so presets and CI need no media file.
    """

    video: str
    start_frame: Annotated[int, Field(ge=0)] = 0


class MotionLora(_Spec):
    """A motion LoRA (original AnimateDiff layout) from ``models/AnimateDiff`` and its strength."""

    name: str
    weight: Annotated[float, Field(ge=-4.0, le=4.0)] = 1.0


class AnimateDiffSettings(_Spec):
    """Motion-module settings (docs/animatediff.md).

    ``context_length`` frames are denoised together, in windows overlapping by ``context_overlap``, a frame's
    prediction weighted by ``context_weighting`` across its windows. ``loop`` makes the windows wrap (the last frame
    leads into the first) and prompt travel return to the first prompt. ``motion_scale`` scales the temporal
    attention output (0: no motion module, 1: as trained). ``segment_frames`` (0: the whole clip) cuts the clip into
    independently denoised segments for spreading over GPUs, cross-faded over ``segment_overlap`` frames; it changes
    the frames (like ``context_length``), the number of workers never does. ``strength`` is the denoising
    strength of a video-to-video clip (a job with a ``source``): 0 keeps the source frames, 1 repaints them.
    ``freeinit_iterations`` > 0 turns on FreeInit (each iteration re-renders the clip from the previous result's
    low frequencies: more coherent motion, that many times the render time).
    """

    motion_module: str | None = None
    motion_loras: tuple[MotionLora, ...] = ()
    context_length: Annotated[int, Field(ge=1, le=64)] = 16
    context_overlap: Annotated[int, Field(ge=0, le=63)] = 4
    context_weighting: Literal["flat", "pyramid"] = "pyramid"
    loop: bool = False
    motion_scale: Annotated[float, Field(ge=0.0, le=3.0)] = 1.0
    segment_frames: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    segment_overlap: Annotated[int, Field(ge=1, le=64)] = 8
    strength: Annotated[float, Field(ge=0.0, le=1.0)] = 0.75
    freeinit_iterations: Annotated[int, Field(ge=0, le=5)] = 0
    freeinit_cutoff: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25

    @model_validator(mode="after")
    def _overlap_below_length(self) -> AnimateDiffSettings:
        if self.context_overlap >= self.context_length:
            raise ValueError(
                f"context_overlap ({self.context_overlap}) must be smaller than context_length "
                f"({self.context_length})"
            )
        if self.segment_frames and self.segment_overlap >= self.segment_frames:
            raise ValueError(f"segment_overlap ({self.segment_overlap}) must be smaller than segment_frames "
                             f"({self.segment_frames}); e.g. segment_frames = 48, segment_overlap = 8")
        return self


class FarmSettings(_Spec):
    """How the farm treats this job's chunks when things go wrong. Never changes a frame's pixels.

    Attributes:
        chunk_retries: retries of a failed chunk (with exponential back-off: 2 s, 4 s, 8 s …).
        error_budget: the job stops taking new chunks once this many chunks have failed for good; chunks already
            running finish, finished frames are kept, and a rerun resumes.
        blocklist_after: a worker (host + GPU) that failed this many chunks of this job takes none of its chunks
            any more, as Flamenco does: a broken GPU or driver should not burn through the job's retries.
        max_parallel_chunks: chunks in flight at once in one flow run (default: the task runner's worker count).
        chunk_timeout: seconds a chunk may go without committing a frame before it counts as hung: its render
            process is killed (a thread could not be stopped), the failure counts against the worker for the
            blocklist, and the chunk is retried. The clock restarts at every committed frame and includes model
            loading at the start of a chunk, so the default (600 s) leaves room for loading SDXL from a slow disk
            and for an AnimateDiff window, whose frames arrive together. ``None`` renders in the task's thread
            with no watchdog (debugging only).
    """

    chunk_retries: Annotated[int, Field(ge=0, le=20)] = 2
    retry_delay_seconds: Annotated[float, Field(ge=0, le=3600)] = 2.0
    error_budget: Annotated[int, Field(ge=1)] = 3
    blocklist_after: Annotated[int, Field(ge=1)] = 3
    max_parallel_chunks: Annotated[int, Field(ge=1, le=1024)] | None = None
    chunk_timeout: Annotated[float, Field(gt=0, le=86_400)] | None = 600.0


class _JobBase(_Spec):
    """Fields every kind of job has."""

    name: Annotated[str, Field(pattern=JOB_NAME_PATTERN)]
    description: str = ""
    width: Annotated[int, Field(ge=64, le=8192, multiple_of=8)] = 512
    height: Annotated[int, Field(ge=64, le=8192, multiple_of=8)] = 512
    fps: Annotated[float, Field(gt=0, le=240)] = 24.0
    frames: Annotated[int, Field(ge=1, le=1_000_000)] = 48
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 42
    prompts: dict[str, str] = Field(default_factory=lambda: {"0": "a test card"})
    positive_prompt: str = ""
    negative_prompt: str = ""
    init_image: str | None = None
    model: ModelRefs = ModelRefs()
    controlnet: tuple[ControlNetUnit, ...] = ()
    motion: Motion = Motion()
    seeds: SeedPolicy = SeedPolicy()
    output: Output = Output()
    farm: FarmSettings = FarmSettings()

    @field_validator("prompts")
    @classmethod
    def _prompts_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError('at least one prompt is needed, e.g. prompts = { 0 = "a neon tunnel" }')
        return value

    @model_validator(mode="after")
    def _output_fits(self) -> _JobBase:
        # A loop that is not a whole number of beats is reported now, not after a night of rendering.
        from framefarm.video.finish import check_job_output

        check_job_output(self.frames, self.fps, self.output)
        return self

    @model_validator(mode="after")
    def _schedules_evaluate(self) -> _JobBase:
        # Evaluate every schedule once now, so a typo in frame 3 000's expression is reported before any GPU
        # time is spent. The planner evaluates them again; parsing is cheap next to rendering.
        from framefarm.animation.schedules import evaluate_job_schedules

        evaluate_job_schedules(self)
        return self


class DepthWarp(_Spec):
    """Where a 3D Deforum job gets its depth (Deforum's ``use_depth_warping``, ``depth_algorithm``, ``midas_weight``).

    With ``enabled`` and a depth model available to the renderer, each warp follows the depth of the previous frame;
    otherwise (depth off, or the weight-free preview) the scene is a plane: a pure camera move. MiDaS models give
    inverse depth (near is bright), the others metric depth; ``(old)`` algorithms use Deforum's legacy raw depth.
    """

    enabled: bool = True
    algorithm: Literal["Midas-3-Hybrid", "Midas-3.1-BeitLarge", "AdaBins", "Zoe", "Leres", "Depth-Anything-V2-Small",
                       "Midas+AdaBins (old)", "Zoe+AdaBins (old)"] = "Midas-3-Hybrid"
    midas_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2


class ColorCoherence(_Spec):
    """Colour matching against drift (Deforum's ``color_coherence``): per-channel histogram matching in ``mode``'s
    colour space, to the first frame's output, an image, or the frames of a video.

    ``reference = "video"`` matches to the video frame at the last multiple of ``video_every_n``. ``legacy`` is
    Deforum's ``legacy_colormatch``: match the warped previous frame before diffusion instead of after.
    ``force_grayscale`` renders in grey. Deforum's "Image" and "Video Input" modes are LAB with an image or video
    reference here; framefarm also allows them in RGB or HSV.
    """

    mode: Literal["None", "LAB", "HSV", "RGB"] = "LAB"
    reference: Literal["first_frame", "image", "video"] = "first_frame"
    image: str | None = None
    video: str | None = None
    video_every_n: Annotated[int, Field(ge=1)] = 1
    force_grayscale: bool = False
    legacy: bool = False

    @model_validator(mode="after")
    def _reference_consistent(self) -> ColorCoherence:
        if self.mode == "None" and self.reference != "first_frame":
            raise ValueError(f'reference = "{self.reference}" needs colour matching on; set mode to LAB, HSV or RGB')
        for kind in ("image", "video"):
            path = getattr(self, kind)
            if self.reference == kind and not path:
                raise ValueError(f'reference = "{kind}" needs {kind} = "path/to/the/{kind}"')
            if path and self.reference != kind:
                raise ValueError(f'{kind} is set but reference is "{self.reference}"; set reference = "{kind}" '
                                 f"or remove {kind}")
        return self


class HybridVideo(_Spec):
    """Deforum's hybrid video: the camera follows a video's motion and/or the video is composited into each frame.

    ``motion`` warps the previous frame by the video's motion (optical flow with ``flow_method`` scaled by
    ``flow_factor``, or a RANSAC ``Perspective``/``Affine`` fit); ``composite`` blends the video frame in with
    ``comp_alpha``, optionally through a mask (``comp_mask_*``). Schedules are per frame. ``video`` is required
    once either is on (Deforum takes it from ``video_init_path``).
    """

    video: str | None = None
    motion: Literal["None", "Optical Flow", "Perspective", "Affine"] = "None"
    motion_use_prev_img: bool = False
    flow_method: Literal["RAFT", "DIS Medium", "DIS Fine", "Farneback"] = "RAFT"
    flow_consistency: bool = False
    consistency_blur: Annotated[int, Field(ge=0, le=64)] = 2
    flow_factor: str = "0:(1)"
    composite: Literal["None", "Normal", "Before Motion", "After Generation"] = "None"
    comp_alpha: str = "0:(0.5)"
    comp_mask_type: Literal["None", "Depth", "Video Depth", "Blend", "Difference"] = "None"
    comp_mask_inverse: bool = False
    comp_mask_equalize: Literal["None", "Before", "After", "Both"] = "None"
    comp_mask_auto_contrast: bool = False
    comp_mask_blend_alpha: str = "0:(0.5)"
    comp_mask_contrast: str = "0:(1)"
    comp_mask_auto_contrast_cutoff_high: str = "0:(100)"
    comp_mask_auto_contrast_cutoff_low: str = "0:(0)"
    use_first_frame_as_init_image: bool = True
    use_init_image: bool = False
    generate_inputframes: bool = False
    generate_human_masks: Literal["None", "PNGs", "Video", "Both"] = "None"

    @property
    def active(self) -> bool:
        return self.motion != "None" or self.composite != "None"

    @model_validator(mode="after")
    def _video_when_active(self) -> HybridVideo:
        if self.active and not self.video:
            raise ValueError(f'motion = "{self.motion}" / composite = "{self.composite}" need video = "clip.mp4"')
        return self

    def schedules(self) -> dict[str, str]:
        names = ("flow_factor", "comp_alpha", "comp_mask_blend_alpha", "comp_mask_contrast",
                 "comp_mask_auto_contrast_cutoff_high", "comp_mask_auto_contrast_cutoff_low")
        return {f"hybrid.{name}": getattr(self, name) for name in names}


class Shot(_Spec):
    """One shot of a Deforum job: frames ``start`` … (the next shot's start − 1) are their own chain.

    A shot starts fresh — img2img of its ``init_image``, or txt2img — not from the previous shot's last frame; its
    cadence groups, colour-coherence reference (``first_frame``) and 2D camera start at ``start``. Schedules, prompts
    and the seed behaviour keep the job's global frame index ``t``, so every number matches the unsplit job;
    ``seed_offset`` is added to the shot's seeds (modulo 2**32) for a different take of the same shot.
    """

    start: Annotated[int, Field(ge=0)]
    init_image: str | None = None
    seed_offset: Annotated[int, Field(gt=-(2**32), lt=2**32)] = 0


class Variation(_Spec):
    """One version of a Deforum animation among ``variations``: the same camera, schedules and prompts, another seed
    and/or an added prompt. Each variation is its own chain and its own output video (``<job>_<name>``); all of them
    render in lockstep, frame ``t`` of every variation in one GPU batch.

    ``seed_offset`` is added to every seed (modulo 2**32); ``positive_prompt`` is put after each frame's positive
    prompt and ``negative_prompt`` after its negative one (both joined with ", "); ``name`` names the output
    (default ``v1``, ``v2``, …).
    """

    name: Annotated[str, Field(pattern=JOB_NAME_PATTERN, max_length=40)] | None = None
    seed_offset: Annotated[int, Field(gt=-(2**32), lt=2**32)] = 0
    positive_prompt: str = ""
    negative_prompt: str = ""


# Variations share one GPU batch per diffused frame, so their number is bounded by what one batch holds: 16 chains
# at 512² with CFG are a batch of 32 (about 10 GiB on an H200), 64 already ~40 GiB.
MAX_VARIATIONS = 64
# `variations = N` spaces the takes' seeds this far apart: with seed behaviour "iter" (a seed per frame, +1 each), an
# offset of 1 would give take 2 at frame t the seed of take 1 at frame t+1; a million frames is beyond any job.
VARIATION_SEED_SPACING = 1_000_003


class ParseqTable(_Spec):
    """Per-frame values from a Parseq manifest, as Deforum's Parseq adapter reads them (docs/deforum.md, "Parseq").

    Either ``manifest`` — a manifest file (a path relative to the job file, or absolute), read when the job is
    loaded, with ``use_deltas`` picking the ``*_delta`` camera moves as Deforum's ``parseq_use_deltas`` does — or the
    series themselves, one value per frame (what ``framefarm import-deforum`` writes, with ``source`` naming the
    manifest they came from). A series replaces the schedule of the same name for every frame; fields without a
    series keep their schedules. ``seed`` drives the seed of every diffused frame (``seeds.behavior`` must be
    ``"schedule"``, as Deforum always takes Parseq's seed); ``prompts`` are whole ``positive --neg negative`` prompts,
    one per frame (backtick math is evaluated; the job-wide positive and negative prompts still apply).
    """

    manifest: str | None = None
    source: str | None = None
    use_deltas: bool = True
    zoom: tuple[float, ...] | None = None
    angle: tuple[float, ...] | None = None
    translation_x: tuple[float, ...] | None = None
    translation_y: tuple[float, ...] | None = None
    translation_z: tuple[float, ...] | None = None
    rotation_3d_x: tuple[float, ...] | None = None
    rotation_3d_y: tuple[float, ...] | None = None
    rotation_3d_z: tuple[float, ...] | None = None
    perspective_flip_theta: tuple[float, ...] | None = None
    perspective_flip_phi: tuple[float, ...] | None = None
    perspective_flip_gamma: tuple[float, ...] | None = None
    perspective_flip_fv: tuple[float, ...] | None = None
    noise: tuple[float, ...] | None = None
    strength: tuple[float, ...] | None = None
    contrast: tuple[float, ...] | None = None
    cfg_scale: tuple[float, ...] | None = None
    fov: tuple[float, ...] | None = None
    near: tuple[float, ...] | None = None
    far: tuple[float, ...] | None = None
    anti_blur_kernel: tuple[float, ...] | None = None
    anti_blur_sigma: tuple[float, ...] | None = None
    anti_blur_amount: tuple[float, ...] | None = None
    anti_blur_threshold: tuple[float, ...] | None = None
    seed: tuple[int, ...] | None = None
    prompts: tuple[str, ...] | None = None

    def value_series(self) -> dict[str, tuple[float, ...]]:
        """The numeric series by plan value name (``"perspective_flip.theta"``, ``"anti_blur.kernel"``)."""
        from framefarm.animation.parseq import PARSEQ_FIELDS

        return {spec.value: getattr(self, spec.job) for spec in PARSEQ_FIELDS
                if spec.value is not None and getattr(self, spec.job) is not None}

    def series_lengths(self) -> dict[str, int]:
        """Every series that is set, by its key in the table, with its length."""
        names = [name for name in type(self).model_fields if name not in ("manifest", "source", "use_deltas")]
        return {name: len(getattr(self, name)) for name in names if getattr(self, name) is not None}


def read_parseq_table(table: Mapping[str, Any], *, frames: int, fps: float | None) -> dict[str, Any]:
    """A ``[parseq]`` table whose ``manifest`` is read into per-frame series (as the importer writes them)."""
    from framefarm.animation.parseq import load_manifest, parseq_series

    given = [key for key in table if key not in ("manifest", "use_deltas", "source")]
    if given:
        raise InputError("parseq", sorted(given), "gives series next to a manifest, so it is unclear which to use",
                         "Keep parseq.manifest (the series are read from it) or the series, not both")
    use_deltas = table.get("use_deltas", True)
    if not isinstance(use_deltas, bool):
        raise InputError("parseq.use_deltas", use_deltas, "must be true or false",
                         "true reads the camera moves from Parseq's *_delta fields, as Deforum does by default")
    manifest, source = load_manifest(table["manifest"], field="parseq.manifest")
    series = parseq_series(manifest, frames=frames, use_deltas=use_deltas, fps=fps, field="parseq.manifest")
    return series.job_table(use_deltas=use_deltas, manifest=source)


class DeforumJob(_JobBase):
    """Keyframe animation: every ``cadence``-th frame is diffused from the warped previous one (Deforum's
    ``diffusion_cadence``); the frames between are cross-fades of the diffused frames around them, each warped by
    its own camera move, optionally advanced along optical flow (``cadence_flow``, scaled by ``cadence_flow_factor``).

    ``animation_mode`` picks Deforum's 2D or 3D camera (see :class:`Motion`). ``sampler_schedule`` and
    ``checkpoint_schedule`` are Deforum string schedules (``0: ("Euler a"), 30: ("DPM++ 2M Karras")``, each string
    held until the next key; unset: the ``model`` table's value). They live here rather than in ``motion`` because
    frame keys hash motion as per-frame numbers and the rest of the job as a whole. ``noise_type`` is Deforum's:
    ``"uniform"`` is plain Gaussian noise, ``"perlin"`` the same modulated by Perlin noise (``perlin_octaves``,
    ``perlin_persistence``). ``padding_mode`` and ``sampling_mode`` are the 3D warp's edge handling and filter.
    """

    kind: Literal["deforum"]
    cadence: Annotated[int, Field(ge=1, le=50)] = 1
    animation_mode: Literal["2D", "3D"] = "2D"
    cadence_flow: Literal["None", "RAFT", "DIS Medium", "DIS Fine", "Farneback"] = "None"
    cadence_flow_factor: str = "0:(1)"
    sampler_schedule: str | None = None
    checkpoint_schedule: str | None = None
    noise_type: Literal["uniform", "perlin"] = "perlin"
    perlin_octaves: Annotated[int, Field(ge=1, le=7)] = 4
    perlin_persistence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    padding_mode: Literal["border", "reflection", "zeros"] = "border"
    sampling_mode: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    depth: DepthWarp = DepthWarp()
    color_coherence: ColorCoherence = ColorCoherence()
    hybrid: HybridVideo = HybridVideo()
    # Shots (docs/deforum_chain.md, "Shots"): each its own chain, rendered side by side. ``shots = [0, 48, 96]`` or
    # ``[[shots]]`` tables with ``start``, ``init_image``, ``seed_offset``; frames before the first start are a shot.
    shots: tuple[Shot, ...] = ()
    # Variations (docs/deforum_chain.md, "Variations"): N versions of the animation rendered in lockstep.
    # ``variations = 8`` (seeds 1 000 003 apart), ``variations = [0, 101, 202]`` (seed offsets) or ``[[variations]]``
    # tables with ``name``, ``seed_offset``, ``positive_prompt``, ``negative_prompt``.
    variations: tuple[Variation, ...] = ()
    parseq: ParseqTable | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_parseq_manifest(cls, data: Any) -> Any:
        # A manifest is read once, here, into per-frame series: the validated job then carries every value it
        # renders with, so a worker (or a resumed run) needs no access to the manifest file.
        if isinstance(data, Mapping) and isinstance(data.get("parseq"), Mapping) \
                and data["parseq"].get("manifest") is not None:
            frames = data.get("frames", cls.model_fields["frames"].default)
            fps = data.get("fps", cls.model_fields["fps"].default)
            if isinstance(frames, int) and not isinstance(frames, bool) and frames >= 1:
                data = {**data, "parseq": read_parseq_table(data["parseq"], frames=frames, fps=fps)}
        return data

    @model_validator(mode="after")
    def _parseq_fits(self) -> DeforumJob:
        # Series lengths are checked where the series are used (animation.job_frames), before any schedule.
        if self.parseq is None:
            return self
        if self.parseq.seed is not None and self.seeds.behavior != "schedule":
            raise InputError("seeds.behavior", self.seeds.behavior, "contradicts parseq.seed: Parseq's seeds are "
                             "used only with seed behaviour schedule (Deforum always takes them)",
                             'Set seeds.behavior = "schedule", or remove parseq.seed')
        return self

    @field_validator("shots", mode="before")
    @classmethod
    def _shots_from_numbers(cls, value: Any) -> Any:
        # A bare frame number is a shot with nothing else to say: `shots = [0, 48, 96]`.
        if isinstance(value, (list, tuple)):
            return [{"start": item} if isinstance(item, int) and not isinstance(item, bool) else item
                    for item in value]
        return value

    @field_validator("variations", mode="before")
    @classmethod
    def _variations_from_numbers(cls, value: Any) -> Any:
        # `variations = 8` is eight takes whose seeds lie VARIATION_SEED_SPACING apart; `variations = [0, 101]` lists
        # the seed offsets.
        fix = "Write variations = 8, variations = [0, 101, 202] (seed offsets) or [[variations]] tables"
        if isinstance(value, int) and not isinstance(value, bool):
            if not 2 <= value <= MAX_VARIATIONS:
                raise InputError("variations", value, f"must be between 2 and {MAX_VARIATIONS} (one is the job "
                                 "itself)", fix)
            return [{"seed_offset": index * VARIATION_SEED_SPACING} for index in range(value)]
        if isinstance(value, (list, tuple)):
            return [{"seed_offset": item} if isinstance(item, int) and not isinstance(item, bool) else item
                    for item in value]
        return value

    @model_validator(mode="after")
    def _variations_differ(self) -> DeforumJob:
        variations = self.variations
        if not variations:
            return self
        if len(variations) == 1 or len(variations) > MAX_VARIATIONS:
            raise InputError("variations", len(variations), f"must list 2 to {MAX_VARIATIONS} variations",
                             "Remove the table for a single version, or split the job")
        seen: dict[tuple, int] = {}
        for index, variation in enumerate(variations):
            what = (variation.seed_offset % 2**32, variation.positive_prompt, variation.negative_prompt)
            if what in seen:
                raise InputError(f"variations.{index}", variation.model_dump(exclude_none=True),
                                 f"renders the same frames as variations.{seen[what]}",
                                 "Give each variation another seed_offset or prompt")
            seen[what] = index
        names = self.variation_names
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise InputError("variations", duplicate, "names two variations (each names its own video)",
                             "Give every variation its own name")
        return self

    @property
    def variation_names(self) -> tuple[str, ...]:
        """Each variation's name: its own, else ``v1``, ``v2``, … (empty for a job without variations)."""
        return tuple(v.name or f"v{index + 1}" for index, v in enumerate(self.variations))

    @property
    def chunk_unit(self) -> int:
        """Chunks hold every variation of the frames they cover (frame ``t`` of all variations is one GPU batch)."""
        return max(1, len(self.variations))

    @model_validator(mode="after")
    def _shots_in_order(self) -> DeforumJob:
        starts = [shot.start for shot in self.shots]
        fix = f"List each shot's first frame once, in increasing order, each below frames ({self.frames}); " \
              "e.g. shots = [0, 48, 96]"
        for before, after in zip(starts, starts[1:]):
            if after == before:
                raise InputError("shots", starts, f"start at frame {after} twice", fix)
            if after < before:
                raise InputError("shots", starts, f"are not in order ({before} comes before {after})", fix)
        beyond = [start for start in starts if start >= self.frames]
        if beyond:
            raise InputError("shots", starts, f"start at frame {beyond[0]}, past the job's last frame "
                             f"({self.frames - 1})", fix)
        return self

    @property
    def shot_list(self) -> tuple[Shot, ...]:
        """Every shot, the implicit first one (frame 0, the job's own ``init_image``) included when not listed."""
        if self.shots and self.shots[0].start == 0:
            return self.shots
        return (Shot(start=0), *self.shots)

    def extra_schedules(self) -> dict[str, str]:
        """Numeric schedules outside ``motion`` (evaluated into the plan like motion's): cadence flow and hybrid."""
        return {"cadence_flow_factor": self.cadence_flow_factor, **self.hybrid.schedules()}

    def string_schedules(self) -> dict[str, str]:
        """The string schedules that are set, by field name."""
        names = ("sampler_schedule", "checkpoint_schedule")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class AnimateDiffJob(_JobBase):
    """Motion-module clip: text-to-video, or video-to-video when ``source`` is set (its frames are the start)."""

    kind: Literal["animatediff"]
    animatediff: AnimateDiffSettings = AnimateDiffSettings()
    source: Source | None = None

    @property
    def chunk_unit(self) -> int:
        """Chunks hold whole segments (a segment is denoised as one piece)."""
        return self.animatediff.segment_frames or self.frames


class Video2VideoJob(_JobBase):
    """Each source frame re-rendered (img2img + ControlNet from that frame); docs/video2video.md.

    ``batch_size`` frames share a GPU batch, fixed by the frame index; it changes pixels slightly, so it is part of
    every frame key. ``"auto"`` is resolved once per job when the render flow plans it (from free GPU memory, or
    :data:`framefarm.renderers.batch_size.CPU_BATCH_SIZE` on a CPU), recorded in the job's folder and reused by every
    later run and worker. ``color_match = "source"`` moves each rendered frame's LAB mean and spread toward its
    source frame's by ``color_match_strength`` (0 none, 1 all the way), against colour flicker; off (``"none"``)
    it is left out of the frame keys, so turning it off re-renders nothing that was rendered without it.
    """

    kind: Literal["video2video"]
    source: Source
    batch_size: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = 4
    color_match: Literal["none", "source"] = "none"
    color_match_strength: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0

    @model_validator(mode="after")
    def _strength_needs_match(self) -> Video2VideoJob:
        if self.color_match == "none" and self.color_match_strength != 1.0:
            raise ValueError('color_match_strength needs color_match = "source"')
        return self

    @model_serializer(mode="wrap")
    def _leave_out_colour_match_when_off(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The dump is what frame keys hash (framefarm/animation/plan.py): a field that is off and absent keeps the
        # keys of every job rendered before colour matching existed, and validating the dump gives the default.
        data = handler(self)
        if self.color_match == "none":
            data.pop("color_match", None)
            data.pop("color_match_strength", None)
        return data

    @property
    def chunk_unit(self) -> int:
        """Chunks hold whole batches (see framefarm/animation/plan.py); ``"auto"`` must be resolved first."""
        if self.batch_size == "auto":
            raise InputError("batch_size", "auto", "is not resolved yet: the render flow resolves it once per job",
                             "Plan through framefarm render, or call framefarm.renderers.batch_size."
                             "resolve_batch_size(job) first")
        return self.batch_size


JobSpec = Annotated[Union[DeforumJob, AnimateDiffJob, Video2VideoJob], Field(discriminator="kind")]
_JOB_ADAPTER: TypeAdapter[DeforumJob | AnimateDiffJob | Video2VideoJob] = TypeAdapter(JobSpec)
AnyJob = DeforumJob | AnimateDiffJob | Video2VideoJob


def random_seed() -> int:
    """A fresh seed for users who ask for one (``--seed random``); recorded in the manifest like any other."""
    return secrets.randbelow(2**32)
