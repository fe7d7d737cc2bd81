"""GPU throughput of framefarm's renderers against plain diffusers, on one GPU.

What it does, in one process:

1. Measures the matmul ceiling (fp16 8192³ products; 512³ fp32 with ``--tiny``).
2. Builds full-size SD1.5 (+ a ControlNet), SDXL and an AnimateDiff motion adapter with random weights from the
   config skeletons framefarm ships, and saves them as diffusers folders of an A1111-style models folder, so
   framefarm loads them through its own model library, exactly as a user's models.
3. Per job: the plain-diffusers baseline (one pipeline call per frame, batch 1, default settings apart from the
   scheduler, which is Euler on both sides so both run the same number of UNet evaluations; fp16; PNG written with
   the same compression level framefarm uses), then framefarm's path, whole-job wall time (VAE encode/decode, PNG
   encoding and writes included; model loading and the compile warm-up batch reported separately).
4. Counts the FLOPs of one baseline frame with ``torch.utils.flop_counter.FlopCounterMode`` (both paths do the
   same arithmetic per frame) and writes one JSON record per job as soon as the job finishes.

Baselines run over ≥ 24 frames (≥ 2 AnimateDiff clips), video2video also at plain diffusers' batch 8; every record
says `default_levers` (true: FRAMEFARM_ACCEL unset: channels last, fused QKV and compile=auto, which compiles a job
on a GPU when it is long enough to win the compilation back). The jobs are that long by default (their first frames
timed, ``job_frames`` in the record says how long); ``--short-jobs`` times jobs of just the frames timed, ``--eager``
turns compilation off for some jobs, ``--compile`` on.

Jobs and the code each one measures (``measured_through`` in every record):

* ``video2video``: framefarm's ``DiffusersRenderer`` (SD1.5 img2img + one ControlNet, 512², 20 steps at strength
  0.6, canny preprocessing, batches of ``--batch``) with the frame writer pool, vs
  ``StableDiffusionControlNetImg2ImgPipeline``.
* ``sdxl_img2img``: framefarm's ``DiffusersRenderer`` (SDXL img2img 1024², 20 steps at 0.6) vs
  ``StableDiffusionXLImg2ImgPipeline``.
* ``deforum_chain``: the Deforum chain renderer through ``render_chunk_frames`` (the chunk work of a render
  process), the zoom-tunnel preset from an init image with a 2 % zoom, vs a plain ``StableDiffusionImg2ImgPipeline``
  chain (frame n = img2img of frame n−1 zoomed 2 %, strength 0.65). A chain is sequential: one frame per call.
* ``animatediff``: the AnimateDiff renderer through ``render_chunk_frames``, jobs of one 16-frame context window with
  the motion module loaded from the models folder, vs ``AnimateDiffPipeline``, one 16-frame clip per call.

Run: ``python benchmarks/gpu/bench_gpu.py --out DIR`` on a GPU; ``--tiny`` runs everything at toy size on a CPU in
seconds (the CPU smoke test does that). ``--jobs`` picks jobs, ``--compile`` the jobs whose framefarm side compiles.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu.idle_gaps import (  # noqa: E402 (needs the path above)
    PHASE_PREFIX, idle_gaps, is_annotation, spans_from_profile,
)

JOBS = ("video2video", "deforum_chain", "deforum_lockstep", "animatediff", "sdxl_img2img")
# Chains of the lockstep record: 16 variations at 512² with CFG are a UNet batch of 32.
LOCKSTEP_CHAINS = 16
PROMPT = "a watercolor painting of a lighthouse, soft paper texture"
NEGATIVE = "photo, noise"


@dataclass
class Size:
    """Everything that differs between the full run and ``--tiny``."""

    tiny: bool
    width: int
    xl_width: int
    steps: int
    v2v_frames: int
    v2v_batch: int
    xl_frames: int
    xl_batch: int
    baseline_frames: int
    chain_frames: int  # baseline chain
    chain_job_frames: int  # framefarm's chain
    clip_frames: int
    clips: int
    baseline_clips: int  # AnimateDiff baseline clips
    baseline_batch: int  # video2video baseline also at this batch (plain diffusers' best)


# Baselines over ≥ 24 frames (≥ 2 clips): shorter ones read 1.1–1.9 frames/s for the same code across runs.
FULL = Size(False, 512, 1024, 20, 96, 16, 16, 8, 24, 24, 32, 16, 4, 2, 8)
TINY = Size(True, 64, 64, 2, 8, 4, 4, 2, 2, 2, 3, 4, 2, 2, 2)


# ---------------------------------------------------------------------------------------------------------------
# Environment and ceiling


def environment(torch, device: str) -> dict:
    from importlib.metadata import version

    versions = {name: version(name) for name in ("torch", "diffusers", "transformers", "numpy")}
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    return {"device": gpu, "python": platform.python_version(), "versions": versions,
            "cuda": torch.version.cuda, "cpu_count": os.cpu_count()}


def matmul_ceiling(torch, device: str, dtype, n: int) -> float:
    """TFLOP/s of an n³ product (random data; median of 10 after 3 warm-ups)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(13):
        sync(torch, device)
        start = time.perf_counter()
        a @ b
        sync(torch, device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * n ** 3 / float(np.median(times)) / 1e12


def sync(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_gib(torch, device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if device == "cuda" else None


def reset_peak(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------------------------------------------------------
# Random-weight models, saved where framefarm's library finds them


def _config(family: str, part: str) -> dict:
    path = ROOT / "framefarm" / "renderers" / "models" / "configs" / family / part / "config.json"
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


TINY_UNET = dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1, cross_attention_dim=32,
                 attention_head_dim=8, norm_num_groups=32, sample_size=8)
TINY_XL_UNET = dict(block_out_channels=(32, 32, 64), layers_per_block=1,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    transformer_layers_per_block=(1, 1, 2), attention_head_dim=(1, 1, 1), cross_attention_dim=96,
                    addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32,
                    norm_num_groups=32, sample_size=8)
TINY_VAE = dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1, norm_num_groups=32, sample_size=64)
TINY_CLIP = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=1,
                 projection_dim=32)
TINY_CLIP_G = dict(TINY_CLIP, hidden_size=64)


def build_models(root: Path, size: Size, torch, device: str, *, with_xl: bool = True,
                 with_motion: bool = True) -> dict:
    """Random-weight SD1.5 + ControlNet (+ SDXL, + an AnimateDiff v2-shaped motion module) as diffusers folders
    under ``root`` (an A1111-style layout)."""
    from diffusers import (
        AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, StableDiffusionPipeline,
        StableDiffusionXLPipeline, UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from framefarm.renderers.models.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    sd_dir, cn_dir = root / "models" / "Stable-diffusion", root / "models" / "ControlNet"
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1)
    build_device = device  # random init of ~3.5 G parameters is seconds on a GPU, minutes on a CPU

    def clip(family, part, cls, tiny):
        config = _config(family, part)
        config = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
        if size.tiny:
            config.update(tiny)
        with torch.device(build_device):
            return cls(CLIPTextConfig(**config))

    def model(cls, config):
        with torch.device(build_device):
            return cls.from_config(config)

    sd15_unet = model(UNet2DConditionModel, {**_config("sd15", "unet"), **(TINY_UNET if size.tiny else {})})
    sd15_vae = model(AutoencoderKL, {**_config("sd15", "vae"), **(TINY_VAE if size.tiny else {})})
    sd15 = StableDiffusionPipeline(vae=sd15_vae, text_encoder=clip("sd15", "text_encoder", CLIPTextModel, TINY_CLIP),
                                   tokenizer=clip_tokenizer(), unet=sd15_unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    sd15.to(torch.float16 if not size.tiny else torch.float32)
    sd15.save_pretrained(sd_dir / "bench-sd15")
    controlnet = ControlNetModel.from_unet(sd15_unet)
    for p in controlnet.parameters():  # ControlNet's zero convolutions: random here, no all-zero arithmetic timed
        if not p.abs().sum():
            torch.nn.init.normal_(p, std=0.02)
    controlnet.to(torch.float16 if not size.tiny else torch.float32).save_pretrained(cn_dir / "bench-canny")
    del sd15, controlnet
    found = {"models_dir": str(root), "sd15": sd_dir / "bench-sd15", "controlnet": cn_dir / "bench-canny"}
    if with_motion:
        from diffusers import MotionAdapter

        tiny = dict(block_out_channels=TINY_UNET["block_out_channels"], motion_layers_per_block=1,
                    motion_num_attention_heads=8, motion_norm_num_groups=32, motion_max_seq_length=32)
        with torch.device(build_device):
            adapter = MotionAdapter(**(tiny if size.tiny else {}))  # defaults: mm_sd_v15_v2's shapes
        for p in adapter.parameters():  # zero-initialised output projections: random here, as in a trained module
            if not p.abs().sum():
                torch.nn.init.normal_(p, std=0.02)
        found["motion"] = root / "models" / "AnimateDiff" / "bench-motion"
        adapter.to(torch.float16 if not size.tiny else torch.float32).save_pretrained(found["motion"])
        del adapter
    if not with_xl:
        return found

    xl_unet = model(UNet2DConditionModel, {**_config("sdxl", "unet"), **(TINY_XL_UNET if size.tiny else {})})
    xl_vae = model(AutoencoderKL, {**_config("sdxl", "vae"), **(TINY_VAE if size.tiny else {})})
    xl = StableDiffusionXLPipeline(
        vae=xl_vae, text_encoder=clip("sdxl", "text_encoder", CLIPTextModel, TINY_CLIP),
        text_encoder_2=clip("sdxl", "text_encoder_2", CLIPTextModelWithProjection, TINY_CLIP_G),
        tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(pad_token="!"), unet=xl_unet, scheduler=scheduler,
        add_watermarker=False)
    xl.to(torch.float16 if not size.tiny else torch.float32)
    xl.save_pretrained(sd_dir / "bench-sdxl")
    del xl
    if device == "cuda":
        torch.cuda.empty_cache()
    return {**found, "sdxl": sd_dir / "bench-sdxl"}


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces


@dataclass
class Bench:
    torch: object
    device: str
    dtype: object
    size: Size
    models: dict
    work: Path
    compile_jobs: set
    ceiling_tflops: float
    profile_dir: Path | None = None  # --profile: where the phase timings and the kernel table of one batch go
    compare_per_frame_vae: bool = False  # --compare-per-frame-vae: video2video also through the per-frame VAE path
    compare_sync_decode: bool = False  # --compare-sync-decode: video2video also fetching each batch's pixels at once
    compile_spec: str = "blocks"  # --compile-spec: FRAMEFARM_ACCEL's compile=<scope>[:<mode>] for the --compile jobs
    compare_inline_noise: bool = False  # --compare-inline-noise: the Deforum chain also with its noise made in line
    warm_start: bool = False  # --warm-start: after video2video, a second process renders a batch from the caches
    eager_jobs: set = None  # --eager: jobs whose framefarm side never compiles (FRAMEFARM_ACCEL=channels_last,fuse_qkv)
    short_jobs: bool = False  # --short-jobs: jobs as long as the frames timed (compile=auto then leaves them eager)
    check_eager: bool = False  # --check-eager: a job's first frames rendered again eager, compared with the timed ones
    compare_noise_threads: bool = False  # --compare-noise-threads: lockstep chains also with noise made on threads
    compare_lockstep_drivers: bool = False  # --compare-lockstep-drivers: lockstep also without head start / 1 group
    compare_pageable_noise: bool = False  # --compare-pageable-noise: video2video also with diffusers' own noise copies
    compared_switches: tuple = ()  # --compare-host-copies etc.: jobs also timed with these SWITCHES flipped
    v2v_chunk: int | None = None  # --v2v-chunk: video2video frames per chunk (None: the planner's automatic size)
    skip_baselines: bool = False  # --skip-baselines: video2video without plain diffusers (an A/B of framefarm only)
    # --warm-start-eager-first, --warm-start-variants: more probes after the record's, each {"name", "env",
    # "eager_first", "cprofile"} (a diagnosis of where a warm start goes; the record's warm_start_s is the first probe)
    warm_start_variants: tuple = ()
    profile_out: Path | None = None  # where tables that accompany the JSON go (the --out folder)

    def job_frames(self, kind: str, frames: int) -> int:
        """The length of the job whose first ``frames`` frames are timed. By default a job long enough for
        compile=auto to compile it (a farm's jobs are minutes long; the benchmark times their first frames), so
        `default_levers` measures what such a job gets; ``--short-jobs``: just the frames timed."""
        from framefarm.renderers.accel import COMPILE_RULES

        if self.short_jobs:
            return frames
        return max(frames, COMPILE_RULES[kind].min_frames)  # (the benchmark's Deforum job has cadence 1)

    def flops(self, run) -> float:
        """FLOPs of ``run()`` (matmuls, convolutions, attention), counted by torch's FlopCounterMode."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            run()
        return float(counter.get_total_flops())

    def timed(self, run) -> float:
        self.reset()
        sync(self.torch, self.device)
        start = time.perf_counter()
        run()
        sync(self.torch, self.device)
        return time.perf_counter() - start

    def reset(self) -> None:
        reset_peak(self.torch, self.device)

    def peak(self) -> float | None:
        return peak_gib(self.torch, self.device)

    def record(self, job: str, through: str, baseline_through: str, frames: int, seconds: float,
               baseline_frames: int, baseline_seconds: float | None, flop_per_frame: float, **extra) -> dict:
        fps = frames / seconds
        achieved = flop_per_frame * fps / 1e12
        record = {
            "job": job, "measured_through": through, "baseline_through": baseline_through,
            "frames": frames, "seconds": round(seconds, 3), "frames_per_s": round(fps, 3),
            "gflop_per_frame": round(flop_per_frame / 1e9, 1), "achieved_tflops": round(achieved, 2),
            "fraction_of_ceiling": round(achieved / self.ceiling_tflops, 4),
            # The levers a worker gets with FRAMEFARM_ACCEL unset (compile=auto), or opt-in / opt-out ones.
            "default_levers": job not in self.compile_jobs and job not in (self.eager_jobs or ()),
        }
        if baseline_seconds is None:  # --skip-baselines: framefarm's side only; no speed-up to report
            return {**record, "baseline_through": "skipped", **extra}
        base_fps = baseline_frames / baseline_seconds
        return {
            **record, "baseline_frames": baseline_frames, "baseline_seconds": round(baseline_seconds, 3),
            "baseline_frames_per_s": round(base_fps, 3), "speedup_vs_baseline": round(fps / base_fps, 2),
            "baseline_achieved_tflops": round(flop_per_frame * base_fps / 1e12, 2),
            "baseline_fraction_of_ceiling": round(flop_per_frame * base_fps / 1e12 / self.ceiling_tflops, 4),
            **extra,
        }


def testcard_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    from framefarm.renderers.testcard import source_testcard

    return [source_testcard(i, width, height, 24.0) for i in range(n)]


def write_png(path: Path, image: np.ndarray) -> None:
    """The baseline's write: PIL, at framefarm's PNG compression level (so PNG settings don't count as speed-up)."""
    from PIL import Image

    from framefarm.images import PNG_COMPRESSION

    Image.fromarray(image).save(path, compress_level=PNG_COMPRESSION)


def _euler(pipe):
    from diffusers import EulerDiscreteScheduler

    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _free(b: Bench, *objects) -> None:
    import gc

    del objects
    gc.collect()
    if b.device == "cuda":
        b.torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------
# framefarm's renderer over a whole job


def image_job(models_dir: str, *, checkpoint: str, width: int, steps: int, frames: int, batch: int,
              controlnet: bool, name: str, tiny: bool):
    """The video2video / SDXL img2img job the benchmark renders (the video-restyle preset, 20 steps at 0.6)."""
    from framefarm.job import job_from_preset

    overrides = [f'model.models_dir="{models_dir}"', f'model.checkpoint="{checkpoint}"', f"model.steps={steps}",
                 'model.sampler="Euler"', f"width={width}", f"height={width}", f"frames={frames}",
                 f"batch_size={batch}", 'motion.strength="0:(0.6)"', f'prompts.0="{PROMPT}"', f'name="{name}"',
                 f'model.dtype="{"float32" if tiny else "float16"}"']
    overrides.append('controlnet.0.model="bench-canny"' if controlnet else "controlnet=[]")
    return job_from_preset("video-restyle", overrides)


def probe_warm_start(spec: dict) -> dict:
    """What a second worker process on the same host pays before its first batch: load the models, render one batch
    (compilation read back from the on-disk caches the first process filled), then one steady batch. Runs in its
    own process (``--probe-warm-start``); prints one JSON line."""
    import torch

    from framefarm.animation.plan import plan_job
    from framefarm.renderers import get_renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.components import load_components

    if spec["tiny"]:
        # As the first process (main): the CPU's thread count enters Inductor's kernels and so its cache keys.
        torch.set_num_threads(1)
    job = image_job(spec["models_dir"], checkpoint=spec["checkpoint"], width=spec["width"], steps=spec["steps"],
                    frames=spec["job_frames"], batch=spec["batch"], controlnet=spec["controlnet"], name="warm-start",
                    tiny=spec["tiny"])
    sources = testcard_frames(spec["batch"], spec["width"], spec["width"])
    renderer = get_renderer("diffusers")

    def batch() -> float:  # the job's first batch
        plan = plan_job(job, renderer=renderer.id, chunk_size=spec["batch"])
        context = RenderContext.for_job(job, source_frame=lambda i: sources[i])
        start = time.perf_counter()
        for chunk in plan.chunks[:1]:
            for _ in renderer.render(chunk, chunk.frames, context):
                pass
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    started = time.perf_counter()
    load_components(job)
    load_s = time.perf_counter() - started
    eager = {}
    if spec.get("eager_first"):
        saved = os.environ.get("FRAMEFARM_ACCEL")
        os.environ["FRAMEFARM_ACCEL"] = "channels_last,fuse_qkv"  # the default levers less compile, for one batch
        try:
            eager_first, eager_steady = batch(), batch()
        finally:
            if saved is None:
                del os.environ["FRAMEFARM_ACCEL"]
            else:
                os.environ["FRAMEFARM_ACCEL"] = saved
        eager = {"eager_first_batch_s": round(eager_first, 2), "eager_steady_batch_s": round(eager_steady, 2),
                 "first_use_s": round(max(0.0, eager_first - eager_steady), 2)}
    if spec.get("cprofile"):  # where the first compiled batch's time goes, function by function
        import cProfile

        profiler = cProfile.Profile()
        first = profiler.runcall(batch)
        profiler.dump_stats(spec["cprofile"])
    else:
        first = batch()
    steady = batch()
    return {"load_s": round(load_s, 2), **eager, "first_batch_s": round(first, 2), "steady_batch_s": round(steady, 2),
            "compile_from_cache_s": round(max(0.0, first - steady), 2),
            "levers": os.environ.get("FRAMEFARM_ACCEL", "default"), "compiled": compiled_as(job),
            "compile_phases_s": compile_phases(), "dynamo_stats": dynamo_stats()}


def write_cprofile_tables(stats_path: str, stem: Path) -> dict:
    """A probe's cProfile as two text tables beside the JSON (``<stem>.cumulative.txt``, ``<stem>.tottime.txt``)."""
    import io
    import pstats

    written = {}
    for order, lines in (("cumulative", 120), ("tottime", 60)):
        text = io.StringIO()
        pstats.Stats(stats_path, stream=text).sort_stats(order).print_stats(lines)
        path = stem.with_name(f"{stem.name}.{order}.txt")
        path.write_text(text.getvalue())
        written[order] = path.name
    return written


def dynamo_stats() -> dict:
    """How many frames dynamo compiled and how many graphs it made (its own counters): what the tracing scales with."""
    try:
        from torch._dynamo.utils import counters

        return {str(k): int(v) for k, v in counters["stats"].items()}
    except Exception as exc:  # a diagnosis only
        return {"error": f"{type(exc).__name__}: {exc}"}


def warm_start_variants(args) -> tuple:
    """The extra warm-start probes the command line asks for."""
    variants = [{"name": "eager_first", "eager_first": True}] if args.warm_start_eager_first else []
    variants += json.loads(args.warm_start_variants) if args.warm_start_variants else []
    return tuple(variants)


def run_warm_start_probe(b: Bench, spec: dict, env: dict | None = None) -> dict:
    """:func:`probe_warm_start` in a process of its own (what it printed, and the process's wall time); ``env``: more
    environment variables for it."""
    import subprocess

    started = time.perf_counter()
    probe = subprocess.run([sys.executable, __file__, "--probe-warm-start", json.dumps(spec)], capture_output=True,
                           text=True, check=False, env={**os.environ, "FRAMEFARM_DEVICE": b.device, **(env or {})})
    process_s = time.perf_counter() - started
    lines = [line for line in probe.stdout.splitlines() if line.startswith("{")]
    if probe.returncode != 0 or not lines:
        return {"error": probe.stderr[-2000:]}
    return {**json.loads(lines[-1]), "process_s": round(process_s, 2)}


def compile_phases() -> dict:
    """Seconds this process spent in each phase of torch.compile (dynamo tracing, AOT autograd, Inductor, cache
    loads), summed over its compiled graphs, as torch's own counters report them: where a warm start goes."""
    try:
        from torch._dynamo.utils import compile_times

        names, values = compile_times(repr="csv", aggregate=True)
        return {str(n): round(float(v), 3) for n, v in zip(names, values)}
    except Exception as exc:  # a diagnosis only; the counters' shape changes between torch releases
        return {"error": f"{type(exc).__name__}: {exc}"}


def framefarm_job(b: Bench, *, checkpoint: str, width: int, frames: int, batch: int, controlnet: bool,
                  job_name: str) -> dict:
    """Load (timed), the job's first chunk (compilation on its first batch; timed apart), then ``frames`` more
    through DiffusersRenderer, chunk by chunk as a farm's render processes take them: ``--v2v-chunk`` frames per
    chunk, by default the planner's own size for a job this long (whole batches). A chunk's first batch waits for
    its inputs; the next batches' are made while one denoises."""
    from framefarm.animation.plan import auto_chunk_size, plan_job
    from framefarm.images import encode_png
    from framefarm.renderers import get_renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.components import load_components
    from framefarm.storage import FrameStore
    from framefarm.storage.writer_pool import FrameWriterPool

    declared = b.job_frames("video2video", frames + batch)
    asked = b.v2v_chunk or auto_chunk_size(declared)
    per_chunk = -(-asked // batch) * batch  # whole batches, as the planner rounds it
    job_frames = max(declared, per_chunk + frames)  # the first chunk (warm-up), then the frames timed
    job = image_job(b.models["models_dir"], checkpoint=checkpoint, width=width, steps=b.size.steps, frames=job_frames,
                    batch=batch, controlnet=controlnet, name=job_name, tiny=b.size.tiny)
    renderer = get_renderer("diffusers")
    plan = plan_job(job, renderer=renderer.id, chunk_size=per_chunk)
    sources = testcard_frames(per_chunk + frames, width, width)

    def run(first: int, n: int) -> int:
        """Render the job's frames ``first … first+n−1`` (whole batches), one render call per chunk they touch."""
        context = RenderContext.for_job(job, source_frame=lambda i: sources[i])
        store = FrameStore(str(b.work / "frames"), job.name)
        with FrameWriterPool(store, encode_png, threads=8) as writer:
            for chunk in plan.chunks:
                wanted = [f for f in chunk.frames if first <= f < first + n]
                for frame, image in renderer.render(chunk, wanted, context) if wanted else ():
                    i = chunk.local(frame)
                    writer.submit(frame, image, key=chunk.frame_keys[i], seed=chunk.seeds[i],
                                  width=image.shape[1], height=image.shape[0])
        return len(writer.close())

    started = time.perf_counter()
    setup = load_components(job)  # loads and accelerates the models (process cache)
    load_s = time.perf_counter() - started
    warm_s = b.timed(lambda: run(0, per_chunk))  # first chunk: compilation, cuDNN plans, allocator warm-up
    seconds = b.timed(lambda: run(per_chunk, frames))
    if b.check_eager:
        def render_first_batch(eager_job) -> None:
            context = RenderContext.for_job(eager_job, source_frame=lambda i: sources[i])
            store = FrameStore(str(b.work / "frames"), eager_job.name)
            with FrameWriterPool(store, encode_png, threads=8) as writer:
                chunk = plan.chunks[1]
                for frame, image in renderer.render(chunk, list(chunk.frames)[:batch], context):
                    i = chunk.local(frame)
                    writer.submit(frame, image, key=chunk.frame_keys[i], seed=chunk.seeds[i],
                                  width=image.shape[1], height=image.shape[0])

        check = eager_check(b, job, list(plan.chunks[1].frames)[:batch], render_first_batch)
    chunk_s = seconds * per_chunk / frames  # a steady chunk, as timed
    compile_s = max(0.0, warm_s - chunk_s)
    from framefarm.renderers.accel import attention_backends

    extra = {"eager_check": check} if b.check_eager else {}
    if b.profile_dir is not None and b.device == "cuda":
        try:
            # Two whole chunks, as timed: the GPU's time between one chunk's last kernel and the next one's first
            # (the chunk's end and start on the host) lies inside the profile's window, where its idle-gap
            # attribution sees it; a chunk's first batch waits for its inputs, the next ones' are made ahead.
            extra["profile"] = profile_batch(b, lambda: run(0, 2 * per_chunk), job_name, 2 * chunk_s)
        except Exception as exc:  # the profile is a diagnosis: never lose the job's figures to it
            extra["profile"] = {"error": f"{type(exc).__name__}: {exc}"}
    return {**extra, "seconds": seconds, "chunk_size": per_chunk, "load_s": round(load_s, 2),
            "warmup_batch_s": round(warm_s, 2),
            "compile_s": round(compile_s, 2), "peak_mem_gib": b.peak(),
            "frames_per_s_incl_compile": round(frames / (seconds + compile_s), 3),
            "levers": os.environ.get("FRAMEFARM_ACCEL", "default"), "compiled": compiled_as(job),
            "job_frames": job_frames, "renderer": renderer.id, "unet_attention": attention_backends(setup.base.unet)}


def profiled_functions() -> tuple[list[tuple[object, str]], list[tuple[object, str]]]:
    """(owner, attribute) of the functions a profile times and labels — framefarm's batch phases and the pipeline
    call — and of those it only labels: the diffusers pipeline's and scheduler's steps inside a call (a synced
    timing of those would be noise)."""
    from diffusers import (
        EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionControlNetImg2ImgPipeline,
        StableDiffusionImg2ImgPipeline,
    )

    from framefarm.renderers import samplers
    from framefarm.renderers.diffusers import denoise
    from framefarm.renderers.diffusers.kinds import video2video
    from framefarm.renderers.diffusers.kinds.animatediff import clip, renderer as animatediff

    pipelines = (StableDiffusionControlNetImg2ImgPipeline, StableDiffusionImg2ImgPipeline)
    phases = ([(video2video, "unit_control_images"), (denoise, "encode_sources"), (denoise, "queue_decode")]
              + [(cls, "__call__") for cls in pipelines] + [(animatediff, "_denoise"), (animatediff, "queue_decode")])
    inner = ([(denoise, name) for name in ("encode_pairs", "to_tensor")] + [(samplers, "make_scheduler")]
             + [(clip, "clip_conditioning"), (clip, "_denoise_loop"), (animatediff, "_controls")]
             + [(cls, name) for cls in pipelines for name in ("check_inputs", "prepare_control_image",
                                                              "get_timesteps", "prepare_latents")
                if name in vars(cls)]
             + [(cls, name) for cls in (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler)
                for name in ("set_timesteps", "scale_model_input", "step")])
    return phases, inner


@contextmanager
def patched(targets: list[tuple[object, str]], wrap):
    """Replace each ``owner.attribute`` with ``wrap(name, original)`` for the block; put the originals back."""
    originals = {(owner, name): getattr(owner, name) for owner, name in targets}
    for (owner, name), fn in originals.items():
        setattr(owner, name, wrap(name if name != "__call__" else "denoise (pipeline call)", fn))
    try:
        yield
    finally:
        for (owner, name), fn in originals.items():
            setattr(owner, name, fn)


def profile_batch(b: Bench, run_batch, job_name: str, steady_batch_s: float) -> dict:
    """Where one steady batch's time goes: (1) phases timed with a device sync around each (control images, VAE
    encode, the pipeline's denoising, VAE decode; the rest is prompts, PNG hand-off and Python), (2) torch.profiler's
    kernel table of one batch, grouped by kernel family, against the batch's wall time (GPU busy fraction), (3) the
    GPU's idle gaps in that batch, by the launch that came late and what the host did meanwhile (``idle_gaps``).
    ``run_batch`` renders one unit of the timed work (a video2video chunk, an AnimateDiff clip, lockstep steps);
    ``steady_batch_s`` is what the timed run spent on such a unit."""
    import torch

    phases: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            torch.cuda.synchronize()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                torch.cuda.synchronize()
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    def labelled(name, fn):
        def wrapper(*args, **kwargs):
            with torch.profiler.record_function(PHASE_PREFIX + name):
                return fn(*args, **kwargs)
        return wrapper

    phase_functions, inner_functions = profiled_functions()
    with patched(phase_functions, timed):
        torch.cuda.synchronize()
        start = time.perf_counter()
        run_batch()
        torch.cuda.synchronize()
        synced_s = time.perf_counter() - start
    result = {"steady_batch_s": round(steady_batch_s, 3), "phases_synced_batch_s": round(synced_s, 3),
              "phases_s": {k: round(v, 3) for k, v in phases.items()},
              "phases_other_s": round(synced_s - sum(phases.values()), 3)}

    result["stream_syncs"] = count_syncs(run_batch)

    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with patched(phase_functions + inner_functions, labelled), profile(activities=activities) as prof:
        start = time.perf_counter()
        run_batch()
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    families: dict[str, float] = {}
    kernels = []
    for event in prof.key_averages():
        device_us = getattr(event, "self_device_time_total", None)
        if device_us is None:
            device_us = getattr(event, "self_cuda_time_total", 0.0)
        if not device_us or str(getattr(event, "device_type", "")).endswith("CPU") or is_annotation(event):
            continue  # host time, or a phase label's range mirrored on the GPU (no kernel of its own)
        name = event.key
        low = name.lower()
        family = ("attention" if any(t in low for t in ("flash", "fmha", "attention", "efficient_attention"))
                  else "triton (compiled fusions)" if "triton" in low
                  else "conv" if any(t in low for t in ("conv", "fprop", "implicit", "dgrad", "winograd"))
                  else "gemm" if any(t in low for t in ("gemm", "cutlass", "cublas", "sm90_xmma", "nvjet", "matmul"))
                  else "group_norm" if any(t in low for t in ("group_norm", "groupnorm", "rowwisemoments",
                                                                "computefused"))
                  else "copy / layout" if any(t in low for t in ("copy", "memcpy", "memset", "cat"))
                  else "other elementwise / reduce")
        families[family] = families.get(family, 0.0) + device_us / 1e6
        kernels.append((device_us / 1e6, event.count, name[:140]))
    busy = sum(families.values())
    kernels.sort(reverse=True)
    result.update({"profiled_batch_wall_s": round(wall, 3), "gpu_kernel_s": round(busy, 3),
                   "gpu_busy_fraction": round(busy / wall, 3) if wall else None,
                   "kernel_families_s": {k: round(v, 3) for k, v in sorted(families.items(), key=lambda x: -x[1])},
                   "top_kernels": [[round(t, 4), n, name] for t, n, name in kernels[:25]]})
    try:
        result["idle"] = idle_gaps(*spans_from_profile(prof))
    except Exception as exc:  # a diagnosis of the diagnosis: keep the kernel table whatever happens here
        result["idle"] = {"error": f"{type(exc).__name__}: {exc}"}
    (b.profile_dir / f"profile_{job_name}.json").write_text(json.dumps(result, indent=2) + "\n")
    try:
        (b.profile_dir / f"profile_{job_name}.txt").write_text(prof.key_averages().table(
            sort_by="self_cuda_time_total", row_limit=60, max_name_column_width=90))
    except Exception as exc:
        (b.profile_dir / f"profile_{job_name}.txt").write_text(f"table failed: {exc}\n")
    print(json.dumps({k: v for k, v in result.items() if k != "top_kernels"}), flush=True)
    return {k: v for k, v in result.items() if k != "top_kernels"}


def count_syncs(run_batch) -> dict:
    """The operations of one batch that made the host wait for the GPU (torch's sync debug mode: ``.item()``,
    device→host copies, copies from pageable host memory, ``nonzero``), counted by the Python line that called
    them: each is a moment when the GPU's queue runs dry until the host queues more."""
    import warnings
    from collections import Counter

    import torch

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run_batch()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sites = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
    return {"total": sum(sites.values()), "by_line": dict(sites.most_common(12))}


def sdpa_backends(torch) -> dict:
    """Milliseconds of SD1.5's largest attention (64² latents: 4096 tokens, 8 heads of 40; CFG batch 64, fp16)
    through each SDPA backend, and its TFLOP/s: is attention where the denoiser loses time?"""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(64, 8, 4096, 40, device="cuda", dtype=torch.float16) for _ in range(3))
    flop = 4 * 64 * 8 * 4096 * 4096 * 40
    result = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
        try:
            with sdpa_kernel([backend]):
                for _ in range(3):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(10):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                torch.cuda.synchronize()
            ms = (time.perf_counter() - start) / 10 * 1e3
            result[backend.name] = {"ms": round(ms, 2), "tflops": round(flop / ms / 1e9, 1)}
        except Exception as exc:
            result[backend.name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    default = None
    try:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            torch.nn.functional.scaled_dot_product_attention(q, k, v)
        torch.cuda.synchronize()
        default = round((time.perf_counter() - start) / 10 * 1e3, 2)
    except Exception:
        pass
    result["default_ms"] = default
    return result


def set_levers(b: Bench, job: str) -> None:
    """The worker's levers for this job's framefarm side (models are reloaded per job, see clear_cache): the
    defaults (FRAMEFARM_ACCEL unset: channels last, fused QKV, compile=auto), an explicit compile (--compile) or
    none (--eager)."""
    from framefarm.renderers.models.loader import clear_cache

    clear_cache()
    if job in b.compile_jobs:
        os.environ["FRAMEFARM_ACCEL"] = f"channels_last,fuse_qkv,compile={b.compile_spec}"
    elif job in (b.eager_jobs or ()):
        os.environ["FRAMEFARM_ACCEL"] = "channels_last,fuse_qkv"
    else:
        os.environ.pop("FRAMEFARM_ACCEL", None)


def eager_check(b: Bench, job, frames: list[int], render) -> dict:
    """``render(job')`` with compilation off, for a copy ``job'`` of ``job`` under another name, in this process
    (the models switch to their eager forward), and its ``frames`` against those the timed run stored for ``job``:
    compiled kernels round differently, but a broken compiled path (stale CUDA-graph outputs, a wrong switch
    between jobs) would show as whole frames of difference."""
    from framefarm.images import decode_png
    from framefarm.storage import FrameStore

    saved = os.environ.get("FRAMEFARM_ACCEL")
    os.environ["FRAMEFARM_ACCEL"] = "channels_last,fuse_qkv"
    eager_job = job.model_copy(update={"name": f"{job.name}-eager"})
    try:
        render(eager_job)
    finally:
        if saved is None:
            os.environ.pop("FRAMEFARM_ACCEL", None)
        else:
            os.environ["FRAMEFARM_ACCEL"] = saved
    diffs = []
    for frame in frames:
        a, e = (decode_png(FrameStore(str(b.work / "frames"), j.name).read_frame_bytes(frame)).astype(np.int16)
                for j in (job, eager_job))
        diffs.append(np.abs(a - e))
    return {"frames": frames, "mean_abs_diff": [round(float(d.mean()), 3) for d in diffs],
            "max_abs_diff": [int(d.max()) for d in diffs], "compiled": compiled_as(job)}


def compiled_as(job) -> str:
    """What the worker's levers compile ``job`` with on this device, for the record."""
    from framefarm.renderers import accel

    choice = accel.device_choice(accel.compile_choice(job), os.environ.get("FRAMEFARM_DEVICE", "cuda"))
    return "eager" if choice is None else f"{choice[0]}:{choice[1] or 'default'}"


# ---------------------------------------------------------------------------------------------------------------
# Jobs


def job_video2video(b: Bench) -> dict:
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetImg2ImgPipeline
    from PIL import Image

    from framefarm.renderers.preprocessors import PreprocessSettings, preprocess

    s, w = b.size, b.size.width
    sources = testcard_frames(s.baseline_frames, w, w)
    pipe = _euler(StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
        b.models["sd15"], controlnet=ControlNetModel.from_pretrained(b.models["controlnet"], dtype=b.dtype),
        dtype=b.dtype, safety_checker=None, feature_extractor=None, requires_safety_checker=False)).to(b.device)
    out = b.work / "baseline-v2v"
    out.mkdir(exist_ok=True)

    def frame(i: int) -> None:
        control = preprocess("canny", sources[i], seed=i, settings=PreprocessSettings())
        image = pipe(PROMPT, negative_prompt=NEGATIVE, image=Image.fromarray(sources[i]),
                     control_image=Image.fromarray(control), strength=0.6, num_inference_steps=s.steps,
                     controlnet_conditioning_scale=0.9, generator=torch.Generator("cpu").manual_seed(i)).images[0]
        write_png(out / f"{i:06d}.png", np.asarray(image))

    def batch(start: int, n: int) -> None:  # plain diffusers' own batching: lists of images and generators
        frames = range(start, start + n)
        controls = [preprocess("canny", sources[i], seed=i, settings=PreprocessSettings()) for i in frames]
        images = pipe([PROMPT] * n, negative_prompt=[NEGATIVE] * n, image=[Image.fromarray(sources[i]) for i in frames],
                      control_image=[Image.fromarray(c) for c in controls], strength=0.6, num_inference_steps=s.steps,
                      controlnet_conditioning_scale=0.9,
                      generator=[torch.Generator("cpu").manual_seed(i) for i in frames]).images
        for i, image in zip(frames, images):
            write_png(out / f"b{i:06d}.png", np.asarray(image))

    flop = b.flops(lambda: frame(0))
    if b.skip_baselines:
        base_s = base_peak = batched_fps = None
    else:
        frame(0)  # warm-up
        base_s = b.timed(lambda: [frame(i) for i in range(s.baseline_frames)])
        n = s.baseline_batch
        batch(0, n)  # warm-up at this batch size
        batched_s = b.timed(lambda: [batch(i, n) for i in range(0, s.baseline_frames - n + 1, n)])
        batched_fps = (s.baseline_frames // n * n) / batched_s
        base_peak = b.peak()
    _free(b, pipe)
    set_levers(b, "video2video")
    ff = framefarm_job(b, checkpoint="bench-sd15", width=w, frames=s.v2v_frames, batch=s.v2v_batch,
                       controlnet=True, job_name="v2v")
    baseline = {} if batched_fps is None else {
        "baseline_peak_mem_gib": base_peak,
        "baseline_batched": {"batch_size": s.baseline_batch, "frames": s.baseline_frames // s.baseline_batch
                             * s.baseline_batch, "frames_per_s": round(batched_fps, 3)}}
    record = b.record("video2video",
                      "framefarm DiffusersRenderer (video2video, SD1.5 + 1 ControlNet) + FrameWriterPool",
                      "diffusers StableDiffusionControlNetImg2ImgPipeline, 1 frame per call",
                      s.v2v_frames, ff.pop("seconds"), s.baseline_frames, base_s, flop, batch_size=s.v2v_batch,
                      width=w, height=w, steps=s.steps, strength=0.6, **baseline, **ff)
    if batched_fps is not None:
        record["speedup_vs_baseline_batched"] = round(record["frames_per_s"] / batched_fps, 2)
    if b.warm_start:
        # A second process on this host, as a second worker (or tomorrow's) would start: same models, same levers,
        # the compile caches the first process filled (FRAMEFARM_CACHE_DIR is inherited).
        spec = {"models_dir": b.models["models_dir"], "checkpoint": "bench-sd15", "width": w, "steps": s.steps,
                "batch": s.v2v_batch, "job_frames": record["job_frames"], "controlnet": True, "tiny": s.tiny}
        record["warm_start"] = run_warm_start_probe(b, spec)
        # What compilation still costs the second process: its first batch over a steady one (model loading,
        # which every worker start pays with or without compile, is warm_start.load_s).
        if "compile_from_cache_s" in record["warm_start"]:
            record["warm_start_s"] = record["warm_start"]["compile_from_cache_s"]
        for variant in b.warm_start_variants:  # diagnoses, not the record: each probe in a process of its own
            cprofile = str(b.work / f"warm-{variant['name']}.pstats") if variant.get("cprofile") else None
            result = run_warm_start_probe(b, {**spec, "eager_first": bool(variant.get("eager_first")),
                                              "cprofile": cprofile}, env=variant.get("env") or {})
            if cprofile and b.profile_out is not None and Path(cprofile).exists():
                result["cprofile"] = write_cprofile_tables(cprofile, b.profile_out / f"warm-{variant['name']}")
            record.setdefault("warm_start_variants", {})[variant["name"]] = {**variant, **result}
    if b.compare_per_frame_vae:
        # Same process, same (compiled) models: the renderer as before the VAE slices (diffusers encodes each frame
        # in its own call, each frame decoded alone with its NaN checks and host copy).
        from framefarm.renderers.diffusers import denoise, vae as vae_module

        saved = denoise.encode_sources, denoise.queue_decode
        denoise.encode_sources = lambda vae, pixels, generators, slice_size: vae_module.to_tensor(pixels)
        denoise.queue_decode = lambda vae, latents, frames, slice_size, lock=None: (
            vae_module.PendingFrames.ready({f: vae_module.decode_latents(vae, latents[k:k + 1], frame=f)
                                            for k, f in enumerate(frames)}))
        try:
            n = 2 * s.v2v_batch
            old = framefarm_job(b, checkpoint="bench-sd15", width=w, frames=n, batch=s.v2v_batch, controlnet=True,
                                job_name="v2v-per-frame-vae")
            old_fps = n / old["seconds"]
            record["per_frame_vae"] = {"frames": n, "seconds": round(old["seconds"], 3),
                                       "frames_per_s": round(old_fps, 3),
                                       "fraction_of_ceiling": round(flop * old_fps / 1e12 / b.ceiling_tflops, 4),
                                       "profile": old.get("profile")}
        finally:
            denoise.encode_sources, denoise.queue_decode = saved
    if b.compare_pageable_noise:
        # Same process, same (compiled) models, same frames: each frame's seeded CPU noise copied to the GPU as
        # diffusers copies it (pageable memory: the stream waits for the GPU at every denoising step).
        from framefarm.renderers.diffusers import host_noise

        host_noise.ENABLED = False
        try:
            paged = framefarm_job(b, checkpoint="bench-sd15", width=w, frames=s.v2v_frames, batch=s.v2v_batch,
                                  controlnet=True, job_name="v2v-pageable-noise")
        finally:
            host_noise.ENABLED = True
        paged_fps = s.v2v_frames / paged["seconds"]
        record["pageable_noise"] = {"frames": s.v2v_frames, "seconds": round(paged["seconds"], 3),
                                    "frames_per_s": round(paged_fps, 3),
                                    "fraction_of_ceiling": round(flop * paged_fps / 1e12 / b.ceiling_tflops, 4),
                                    "pinned_over_pageable": round(record["frames_per_s"] / paged_fps, 3)}
    for switch in b.compared_switches:
        name = f"v2v-{switch.replace('_', '-')}-flipped"
        flipped = with_flipped(switch, lambda: framefarm_job(
            b, checkpoint="bench-sd15", width=w, frames=s.v2v_frames, batch=s.v2v_batch, controlnet=True,
            job_name=name))
        record[f"{switch}_flipped"] = flipped_record(
            b, switch, flipped, frames=s.v2v_frames, flop=flop, default_fps=record["frames_per_s"],
            jobs=("v2v", name), compared=range(s.v2v_batch, s.v2v_batch + min(8, s.v2v_frames)))
    if b.compare_sync_decode:
        # Same process, same (compiled) models, same frames: each batch's pixels fetched from the GPU before the
        # next batch is queued (the renderer before PendingFrames), against the deferred fetch measured above.
        from framefarm.renderers.diffusers import denoise
        from framefarm.renderers.diffusers.vae import PendingFrames

        queued = denoise.queue_decode
        denoise.queue_decode = lambda *args, **kwargs: PendingFrames.ready(queued(*args, **kwargs).result())
        try:
            sync = framefarm_job(b, checkpoint="bench-sd15", width=w, frames=s.v2v_frames, batch=s.v2v_batch,
                                 controlnet=True, job_name="v2v-sync-decode")
            sync_fps = s.v2v_frames / sync["seconds"]
            record["sync_decode"] = {"frames": s.v2v_frames, "seconds": round(sync["seconds"], 3),
                                     "frames_per_s": round(sync_fps, 3),
                                     "fraction_of_ceiling": round(flop * sync_fps / 1e12 / b.ceiling_tflops, 4),
                                     "deferred_over_sync": round(record["frames_per_s"] / sync_fps, 3)}
        finally:
            denoise.queue_decode = queued
    return record


def job_sdxl_img2img(b: Bench) -> dict:
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline
    from PIL import Image

    s, w = b.size, b.size.xl_width
    sources = testcard_frames(s.baseline_frames, w, w)
    pipe = _euler(StableDiffusionXLImg2ImgPipeline.from_pretrained(
        b.models["sdxl"], dtype=b.dtype, requires_aesthetics_score=False)).to(b.device)
    out = b.work / "baseline-xl"
    out.mkdir(exist_ok=True)

    def frame(i: int) -> None:
        image = pipe(PROMPT, negative_prompt=NEGATIVE, image=Image.fromarray(sources[i]), strength=0.6,
                     num_inference_steps=s.steps, generator=torch.Generator("cpu").manual_seed(i)).images[0]
        write_png(out / f"{i:06d}.png", np.asarray(image))

    flop = b.flops(lambda: frame(0))
    frame(0)
    n = max(2, s.baseline_frames // 2)
    base_s = b.timed(lambda: [frame(i) for i in range(n)])
    base_peak = b.peak()
    _free(b, pipe)
    set_levers(b, "sdxl_img2img")
    ff = framefarm_job(b, checkpoint="bench-sdxl", width=w, frames=s.xl_frames, batch=s.xl_batch,
                       controlnet=False, job_name="xl")
    return b.record("sdxl_img2img", "framefarm DiffusersRenderer (video2video kind, SDXL img2img) + FrameWriterPool",
                    "diffusers StableDiffusionXLImg2ImgPipeline, 1 frame per call",
                    s.xl_frames, ff.pop("seconds"), n, base_s, flop, batch_size=s.xl_batch, width=w, height=w,
                    steps=s.steps, strength=0.6, baseline_peak_mem_gib=base_peak, **ff)


def _zoom(image: np.ndarray) -> np.ndarray:
    from framefarm.animation.camera import warp_2d

    h, w = image.shape[:2]
    zoom = 1.02  # Deforum's classic zoom tunnel: 2 % per frame about the centre
    matrix = np.array([[zoom, 0, (1 - zoom) * w / 2], [0, zoom, (1 - zoom) * h / 2], [0, 0, 1]], dtype=np.float64)
    return warp_2d(image, matrix)


def _chunk_job(b: Bench, job, frames: int, chunk_size: int) -> int:
    """Render the first ``frames`` frames of ``job`` (whole chunks of ``chunk_size``) chunk by chunk through
    ``render_chunk_frames``: the code a farm's render process runs per chunk (manifest check, renderer, frame writer
    pool, atomic writes), without Prefect around it."""
    from framefarm.animation.plan import plan_job
    from framefarm.flows.chunk_work import render_chunk_frames
    from framefarm.renderers import get_renderer
    from framefarm.storage import FrameStore

    plan = plan_job(job, renderer=get_renderer("diffusers").id, chunk_size=chunk_size)
    store = FrameStore(str(b.work / "frames"), job.name)
    return sum(len(render_chunk_frames(chunk, job, "diffusers", store)[0])
               for chunk in plan.chunks if chunk.start < frames)


def _model_overrides(b: Bench, width: int) -> list[str]:
    return [f'model.models_dir="{b.models["models_dir"]}"', 'model.checkpoint="bench-sd15"', f"width={width}",
            f"height={width}", f"model.steps={b.size.steps}", 'model.sampler="Euler"',
            f'model.dtype="{"float32" if b.size.tiny else "float16"}"']


CHAIN_STRENGTH = 0.65


def _plain_chain_baseline(b: Bench) -> tuple[np.ndarray, float, float, float | None]:
    """Plain diffusers' Deforum-like chain (img2img of the zoomed previous frame, one call per frame) over
    ``chain_frames`` frames: ``(start image, FLOPs per frame, seconds, peak GiB)``."""
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL import Image

    s, w, strength = b.size, b.size.width, CHAIN_STRENGTH
    first = testcard_frames(1, w, w)[0]
    pipe = _euler(StableDiffusionImg2ImgPipeline.from_pretrained(
        b.models["sd15"], dtype=b.dtype, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)).to(b.device)
    out = b.work / "baseline-chain"
    out.mkdir(exist_ok=True)

    def chain(n: int) -> None:
        previous = first
        for i in range(n):
            previous = np.asarray(pipe(PROMPT, negative_prompt=NEGATIVE, image=Image.fromarray(_zoom(previous)),
                                       strength=strength, num_inference_steps=s.steps,
                                       generator=torch.Generator("cpu").manual_seed(i)).images[0])
            write_png(out / f"{i:06d}.png", previous)

    flop = b.flops(lambda: chain(1))
    chain(1)
    base_s = b.timed(lambda: chain(s.chain_frames))
    base_peak = b.peak()
    _free(b, pipe)
    return first, flop, base_s, base_peak


def _chain_job(b: Bench, first: np.ndarray, frames: int, *extra: str):
    """The zoom-tunnel preset (2 % zoom, no rotation, to match the baseline's motion; its noise and colour coherence
    run as in any Deforum job) from the baseline's start image, ``frames`` long."""
    from framefarm.job import job_from_preset

    w = b.size.width
    init = b.work / "chain-init.png"
    if not init.exists():
        write_png(init, first)

    def job_for(name: str):
        return job_from_preset("zoom-tunnel", _model_overrides(b, w) + [
            f"frames={frames}", f'name="{name}"', f'init_image="{init}"', 'motion.zoom="0:(1.02)"',
            'motion.angle="0:(0)"', f'motion.strength="0:({CHAIN_STRENGTH})"', f'prompts.0="{PROMPT}"',
            f'negative_prompt="{NEGATIVE}"', *extra])

    return job_for


# Switches a benchmark can flip in the same process to time a job without (or with) one of framefarm's measures:
# the module's ``ENABLED`` flag, by the name its records use.
SWITCHES = {"host_copies": "framefarm.renderers.host_copies",
            "control_embedding": "framefarm.renderers.diffusers.control_embedding"}


def with_flipped(switch: str, run):
    """``run()`` with framefarm's ``switch`` (a :data:`SWITCHES` name) flipped from its default, put back after."""
    import importlib

    module = importlib.import_module(SWITCHES[switch])
    default = module.ENABLED
    module.ENABLED = not default
    try:
        return run()
    finally:
        module.ENABLED = default


def chunks_with_flipped(b: Bench, switch: str, job, frames: int, chunk_size: int, *, flop: float,
                        default_fps: float, default_job: str, compared) -> dict:
    """``job`` (the timed job again, under another name) rendered chunk by chunk with ``switch`` flipped, timed,
    and compared with the default run's frames (:func:`flipped_record`)."""
    seconds = with_flipped(switch, lambda: b.timed(lambda: _chunk_job(b, job, frames, chunk_size)))
    return flipped_record(b, switch, {"seconds": seconds}, frames=frames, flop=flop, default_fps=default_fps,
                          jobs=(default_job, job.name), compared=compared)


def flipped_record(b: Bench, switch: str, run: dict, *, frames: int, flop: float, default_fps: float,
                   jobs: tuple[str, str], compared) -> dict:
    """A job timed again with ``switch`` flipped: its speed, the default's over it, and the largest pixel
    difference between the two jobs' frames ``compared`` (same seeds and settings: 0 unless the switch changed a
    value)."""
    import importlib

    from framefarm.storage import FrameStore

    fps = frames / run["seconds"]
    stores = [FrameStore(str(b.work / "frames"), job) for job in jobs]
    diff = max(int(np.abs(decode_png(stores[0].read_frame_bytes(f)).astype(int)
                          - decode_png(stores[1].read_frame_bytes(f)).astype(int)).max()) for f in compared)
    return {switch: not importlib.import_module(SWITCHES[switch]).ENABLED, "frames": frames,
            "seconds": round(run["seconds"], 3), "frames_per_s": round(fps, 3),
            "fraction_of_ceiling": round(flop * fps / 1e12 / b.ceiling_tflops, 4),
            "default_over_flipped": round(default_fps / fps, 3), "max_pixel_diff": diff,
            "profile": run.get("profile")}


def decode_png(data: bytes) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(data)).convert("RGB"))


def job_deforum_chain(b: Bench) -> dict:
    from framefarm.renderers.diffusers.components import load_components

    s, w, strength = b.size, b.size.width, CHAIN_STRENGTH
    first, flop, base_s, base_peak = _plain_chain_baseline(b)
    set_levers(b, "deforum_chain")
    job_frames = b.job_frames("deforum", s.chain_job_frames)
    job_for = _chain_job(b, first, job_frames)

    started = time.perf_counter()
    load_components(job_for("chain-load"))
    load_s = time.perf_counter() - started
    warm_s = b.timed(lambda: _chunk_job(b, job_for("chain-warm"), 2, 2))
    seconds = b.timed(lambda: _chunk_job(b, job_for("chain"), s.chain_job_frames, 16))
    compile_s = max(0.0, warm_s - 2 * seconds / s.chain_job_frames)
    frames = s.chain_job_frames
    extra = {}
    if b.check_eager:
        first = list(range(min(8, frames)))
        extra["eager_check"] = eager_check(b, job_for("chain"), first, lambda j: _chunk_job(b, j, len(first), len(first)))
    if b.compare_inline_noise:
        # Same process, same (compiled) models and frames: each frame's noise made in line, as before the helper
        # thread made the next frame's while this one diffuses.
        from framefarm.renderers.diffusers.kinds.deforum import DeforumChains

        DeforumChains.MAKE_NOISE_AHEAD = False
        try:
            inline_s = b.timed(lambda: _chunk_job(b, job_for("chain-inline-noise"), s.chain_job_frames, 16))
        finally:
            DeforumChains.MAKE_NOISE_AHEAD = True
        extra["inline_noise"] = {"seconds": round(inline_s, 3), "frames_per_s": round(frames / inline_s, 3),
                                 "ahead_over_inline": round(inline_s / seconds, 3)}
    if "host_copies" in b.compared_switches:
        extra["host_copies_flipped"] = chunks_with_flipped(
            b, "host_copies", job_for("chain-host-copies-flipped"), frames, 16, flop=flop, default_fps=frames / seconds,
            default_job="chain", compared=range(min(8, frames)))
    return b.record("deforum_chain",
                    "framefarm Deforum chain renderer (zoom-tunnel preset, init image) through render_chunk_frames "
                    "(chunk work of a render process: renderer + FrameWriterPool + manifest)",
                    "diffusers StableDiffusionImg2ImgPipeline chain, 1 frame per call", frames, seconds,
                    s.chain_frames, base_s, flop, batch_size=1, width=w, height=w, steps=s.steps,
                    strength=strength, baseline_peak_mem_gib=base_peak, peak_mem_gib=b.peak(),
                    load_s=round(load_s, 2), warmup_batch_s=round(warm_s, 2), compile_s=round(compile_s, 2),
                    frames_per_s_incl_compile=round(frames / (seconds + compile_s), 3),
                    levers=os.environ.get("FRAMEFARM_ACCEL", "default"), compiled=compiled_as(job_for("chain")),
                    job_frames=job_frames, note="a chain is sequential: one frame per UNet batch (CFG 2) on one GPU",
                    **extra)


def job_deforum_lockstep(b: Bench) -> dict:
    """Variations of one Deforum animation rendered in lockstep (frame t of every chain in one UNet batch), against
    one plain diffusers chain measured in the same run: the aggregate frames/s of all chains over the plain chain's."""
    from framefarm.animation.plan import lockstep_groups
    from framefarm.renderers.diffusers.components import load_components

    s, w = b.size, b.size.width
    chains = 3 if s.tiny else LOCKSTEP_CHAINS
    first, flop, base_s, base_peak = _plain_chain_baseline(b)
    set_levers(b, "deforum_lockstep")
    steps = s.chain_job_frames  # time steps timed; every one is `chains` frames
    job_for = _chain_job(b, first, b.job_frames("deforum", steps), f"variations={chains}")
    started = time.perf_counter()
    load_components(job_for("lockstep-load"))
    load_s = time.perf_counter() - started
    warm_s = b.timed(lambda: _chunk_job(b, job_for("lockstep-warm"), 2 * chains, 2 * chains))
    frames = steps * chains
    from framefarm.renderers.diffusers.kinds.deforum import DeforumChains

    def timed_run(name: str) -> tuple[float, dict]:
        phases = DeforumChains.PHASE_SECONDS
        for key in phases:
            phases[key] = 0.0
        run_s = b.timed(lambda: _chunk_job(b, job_for(name), frames, 16 * chains))
        # Where a time step goes: inits (warp, coherence, noise), the batch on the GPU (VAE, UNet, decode), the
        # after-diffusion colour match; the rest of the wall time is the chunk work around the renderer.
        return run_s, {key: round(value, 3) for key, value in phases.items()} | {"wall_s": round(run_s, 3)}

    seconds, phases = timed_run("lockstep")
    compile_s = max(0.0, warm_s - 2 * seconds / steps)
    extra = {"phase_seconds": phases}

    def compared(run_s: float, run_phases: dict, ratio: str) -> dict:
        """A variant timed in the same process: its figures and the default run's speed over it."""
        return {"seconds": round(run_s, 3), "frames_per_s": round(frames / run_s, 3), ratio: round(run_s / seconds, 3),
                "phase_seconds": run_phases}
    if b.profile_dir is not None and b.device == "cuda":
        # Four time steps of a fresh job (its first from the init image): where the GPU's time goes, and how much
        # of the wall time it is busy at all.
        runs = iter(range(100))
        extra["profile"] = profile_batch(
            b, lambda: _chunk_job(b, job_for(f"lockstep-profile-{next(runs)}"), 4 * chains, 4 * chains),
            "deforum_lockstep", 4 * seconds / steps)
    if b.compare_lockstep_drivers:
        # Same process and models: the groups' steps queued only when needed (no head start), then the whole
        # step as one group (one UNet batch of every chain) without head start — the driver before pipelining.
        from framefarm.animation import plan as plan_module

        DeforumChains.DIFFUSE_AHEAD = False
        try:
            plain_s, plain_phases = timed_run("lockstep-no-head-start")
            print(json.dumps({"lockstep_no_head_start_s": plain_s, **plain_phases}), flush=True)
            extra["no_head_start"] = compared(plain_s, plain_phases, "pipelined_over_not")
            groups = plan_module.lockstep_groups
            plan_module.lockstep_groups = lambda count: (tuple(range(count)),)
            try:
                b.timed(lambda: _chunk_job(b, job_for("lockstep-one-group-warm"), 2 * chains, 2 * chains))
                DeforumChains.DIFFUSE_AHEAD = True
                ahead_s, ahead_phases = timed_run("lockstep-one-group-ahead")
                extra["one_group_head_start"] = compared(ahead_s, ahead_phases, "pipelined_over_it")
                print(json.dumps({"lockstep_one_group_head_start_s": ahead_s, **ahead_phases}), flush=True)
                DeforumChains.DIFFUSE_AHEAD = False
                one_s, one_phases = timed_run("lockstep-one-group")
            finally:
                plan_module.lockstep_groups = groups
            extra["one_group_no_head_start"] = compared(one_s, one_phases, "pipelined_over_it")
        finally:
            DeforumChains.DIFFUSE_AHEAD = True
    if b.compare_noise_threads:
        DeforumChains.NOISE_IN_PROCESSES = False
        try:
            threads_s, threads_phases = timed_run("lockstep-noise-threads")
        finally:
            DeforumChains.NOISE_IN_PROCESSES = True
        extra["noise_threads"] = compared(threads_s, threads_phases, "processes_over_threads")
    return b.record("deforum_lockstep",
                    f"framefarm Deforum chains, {chains} variations of the zoom-tunnel job in lockstep (one UNet "
                    "batch per lockstep group and time step, each group queued ahead) through render_chunk_frames",
                    "diffusers StableDiffusionImg2ImgPipeline chain, 1 frame per call (one chain)", frames, seconds,
                    s.chain_frames, base_s, flop, chains=chains,
                    lockstep_groups=[len(g) for g in lockstep_groups(chains)],
                    batch_size=max(len(g) for g in lockstep_groups(chains)), width=w, height=w,
                    steps=s.steps, strength=CHAIN_STRENGTH, baseline_peak_mem_gib=base_peak, peak_mem_gib=b.peak(),
                    load_s=round(load_s, 2), warmup_batch_s=round(warm_s, 2), compile_s=round(compile_s, 2),
                    frames_per_s_incl_compile=round(frames / (seconds + compile_s), 3),
                    levers=os.environ.get("FRAMEFARM_ACCEL", "default"), compiled=compiled_as(job_for("lockstep")),
                    job_time_steps=b.job_frames("deforum", steps),
                    note="speedup_vs_baseline: all chains' frames/s over one plain chain's", **extra)


def job_animatediff(b: Bench) -> dict:
    import torch
    from diffusers import AnimateDiffPipeline, MotionAdapter, StableDiffusionPipeline

    from framefarm.job import validate_job

    s, w = b.size, b.size.width
    sd = StableDiffusionPipeline.from_pretrained(b.models["sd15"], dtype=b.dtype, safety_checker=None,
                                                 feature_extractor=None, requires_safety_checker=False)
    adapter = MotionAdapter.from_pretrained(b.models["motion"], dtype=b.dtype)
    pipe = _euler(AnimateDiffPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
                                      unet=sd.unet, motion_adapter=adapter, scheduler=sd.scheduler)).to(b.device)
    out = b.work / "baseline-ad"
    out.mkdir(exist_ok=True)

    def clip(tag: str, seed: int) -> None:
        video = pipe(PROMPT, negative_prompt=NEGATIVE, num_frames=s.clip_frames, height=w, width=w,
                     num_inference_steps=s.steps, output_type="np",
                     generator=torch.Generator("cpu").manual_seed(seed)).frames[0]
        for i, frame in enumerate(video):
            write_png(out / f"{tag}-{i:06d}.png", (np.asarray(frame) * 255).round().astype(np.uint8))

    flop = b.flops(lambda: clip("f", 0)) / s.clip_frames
    clip("w", 0)
    base_s = b.timed(lambda: [clip("b", k) for k in range(1, 1 + s.baseline_clips)])
    base_peak = b.peak()
    _free(b, pipe, sd, adapter)

    # framefarm: AnimateDiff jobs of one 16-frame context window each (the baseline's arithmetic), rendered by the
    # AnimateDiff renderer through render_chunk_frames, with the motion module loaded from the models folder.
    set_levers(b, "animatediff")
    from framefarm.renderers.diffusers.kinds.animatediff.renderer import motion_setup

    # A long job cut into segments of clip_frames − 1 frames, each extended by one frame into the next: every
    # segment is one clip_frames window, the baseline clip's arithmetic (one frame in clip_frames is shared).
    from framefarm.animation.plan import auto_chunk_size

    segment = s.clip_frames - 1
    job_frames = b.job_frames("animatediff", (s.clips + 1) * segment + 1)
    # Chunked as the planner chunks such a job (its automatic size, whole segments: 60 frames of a 1 500-frame job):
    # the renderer queues a chunk's next segment before it waits for the last one's pixels, so a chunk of one
    # segment (calls 1–26) left the GPU idle between segments as a farm's chunks don't. Warm-up: the first chunk;
    # timed: the next two chunks' worth of a fresh job.
    chunk = -(-auto_chunk_size(job_frames) // segment) * segment
    frames = 2 * chunk
    job_frames = max(job_frames, frames + 1)

    def job_for(seed: int, name: str = ""):
        data = {"name": name or f"ad-{seed}", "kind": "animatediff", "width": w, "height": w, "fps": 16,
                "frames": job_frames, "seed": seed, "prompts": {"0": PROMPT}, "negative_prompt": NEGATIVE,
                "model": {"models_dir": b.models["models_dir"], "checkpoint": "bench-sd15", "steps": s.steps,
                          "sampler": "Euler", "dtype": "float32" if s.tiny else "float16"},
                "animatediff": {"motion_module": "bench-motion", "context_length": s.clip_frames,
                                "context_overlap": s.clip_frames // 4, "segment_frames": segment,
                                "segment_overlap": 1}}
        return validate_job(data)

    started = time.perf_counter()
    motion_setup(job_for(0))
    load_s = time.perf_counter() - started
    warm_s = b.timed(lambda: _chunk_job(b, job_for(100), chunk, chunk))
    seconds = b.timed(lambda: _chunk_job(b, job_for(1), frames, chunk))
    compile_s = max(0.0, warm_s - seconds * chunk / frames)
    extra = {"chunk_size": chunk}
    if b.profile_dir is not None and b.device == "cuda":
        profile_jobs = iter(range(200, 10_000))
        try:
            extra["profile"] = profile_batch(
                b, lambda: _chunk_job(b, job_for(next(profile_jobs)), chunk, chunk), "animatediff",
                seconds * chunk / frames)
        except Exception as exc:  # the profile is a diagnosis: never lose the job's figures to it
            extra["profile"] = {"error": f"{type(exc).__name__}: {exc}"}
    if "host_copies" in b.compared_switches:
        extra["host_copies_flipped"] = chunks_with_flipped(
            b, "host_copies", job_for(1, "ad-host-copies-flipped"), frames, chunk, flop=flop, default_fps=frames / seconds,
            default_job="ad-1", compared=range(min(16, frames)))
    if b.check_eager:
        extra["eager_check"] = eager_check(b, job_for(1), list(range(segment)),
                                           lambda j: _chunk_job(b, j, segment, segment))
    return b.record("animatediff", "framefarm AnimateDiff renderer (motion module from the models folder, VAE "
                                   "slices) through render_chunk_frames, segments of one 16-frame window each",
                    "diffusers AnimateDiffPipeline, 1 clip per call", frames, seconds,
                    s.baseline_clips * s.clip_frames, base_s, flop,
                    batch_size=1, num_frames=s.clip_frames, width=w, height=w, steps=s.steps,
                    baseline_peak_mem_gib=base_peak, peak_mem_gib=b.peak(), load_s=round(load_s, 2),
                    warmup_batch_s=round(warm_s, 2), compile_s=round(compile_s, 2),
                    frames_per_s_incl_compile=round(frames / (seconds + compile_s), 3),
                    levers=os.environ.get("FRAMEFARM_ACCEL", "default"), compiled=compiled_as(job_for(1)),
                    job_frames=job_frames, windows_per_frame=round(s.clip_frames / segment, 3), **extra)


RUNNERS = {"video2video": job_video2video, "deforum_chain": job_deforum_chain, "deforum_lockstep": job_deforum_lockstep,
           "animatediff": job_animatediff, "sdxl_img2img": job_sdxl_img2img}


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for gpu_throughput.json")
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU (smoke test)")
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma list of {', '.join(JOBS)}")
    parser.add_argument("--compile", default="", help="jobs whose framefarm side always compiles (comma list)")
    parser.add_argument("--eager", default="", help="jobs whose framefarm side never compiles (comma list)")
    parser.add_argument("--check-eager", action="store_true",
                        help="render each job's first frames again with compilation off and compare")
    parser.add_argument("--short-jobs", action="store_true",
                        help="jobs only as long as the frames timed (compile=auto leaves them eager)")
    parser.add_argument("--v2v-batch", type=int, default=None, help="video2video batch size (default 16)")
    parser.add_argument("--v2v-frames", type=int, default=None, help="video2video frames (a multiple of the batch)")
    parser.add_argument("--name", default="gpu_throughput", help="JSON file name (without .json)")
    parser.add_argument("--profile", action="store_true",
                        help="after each framefarm job: phase timings and the kernel table of one batch (GPU only)")
    parser.add_argument("--compare-per-frame-vae", action="store_true",
                        help="video2video: also time 2 batches with one frame per VAE call (the renderer before)")
    parser.add_argument("--compile-spec", default="blocks",
                        help="compile scope[:mode] for the --compile jobs, e.g. model:reduce-overhead (CUDA graphs)")
    parser.add_argument("--warm-start", action="store_true",
                        help="after video2video: a second process renders one batch from the compile caches")
    parser.add_argument("--warm-start-eager-first", action="store_true",
                        help="with --warm-start: a third process renders one eager batch before its first compiled "
                             "one (what any first batch pays, apart from reading back the compilation)")
    parser.add_argument("--warm-start-variants", default=None,
                        help="with --warm-start: a JSON list of more probes, each {\"name\", \"env\": {...}, "
                             "\"eager_first\": bool, \"cprofile\": bool} (cProfile tables go beside the JSON)")
    parser.add_argument("--skip-baselines", action="store_true",
                        help="video2video: leave plain diffusers out (an A/B of framefarm's side; no speed-ups)")
    parser.add_argument("--probe-warm-start", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--regions", default=None,
                        help="comma list of block classes regional compilation compiles, in place of "
                             "accel.REPEATED_BLOCKS (an A/B of the compiled regions; frame keys say 'bench')")
    parser.add_argument("--inductor-options", default=None,
                        help="JSON object replacing framefarm's INDUCTOR_OPTIONS for this run (an A/B of Inductor "
                             "settings; '{}' for none)")
    parser.add_argument("--compare-inline-noise", action="store_true",
                        help="deforum_chain: also time the job with each frame's noise made in line")
    parser.add_argument("--compare-noise-threads", action="store_true",
                        help="deforum_lockstep: time the chains again with noise made on threads, not processes")
    parser.add_argument("--compare-lockstep-drivers", action="store_true",
                        help="deforum_lockstep: time the chains again without head start, and as one group")
    parser.add_argument("--compare-pageable-noise", action="store_true",
                        help="video2video: also time the job with the seeded noise copied from pageable memory")
    parser.add_argument("--v2v-chunk", type=int, default=None,
                        help="video2video frames per chunk (default: the planner's automatic size for the job; "
                             "the batch size gives one batch per chunk, as calls 1–26 measured)")
    parser.add_argument("--compare-host-copies", action="store_true",
                        help="video2video, deforum_chain, animatediff: also time the job with "
                             "framefarm.renderers.host_copies flipped from its default (pixels compared)")
    parser.add_argument("--compare-control-embedding", action="store_true",
                        help="video2video: also time the job with each ControlNet's conditioning embedding computed "
                             "at every step (framefarm.renderers.diffusers.control_embedding flipped)")
    parser.add_argument("--compare-sync-decode", action="store_true",
                        help="video2video: also time the job with each batch's pixels fetched before the next batch")
    args = parser.parse_args(argv)
    if args.inductor_options is not None:
        # Also read by the warm-start probe, a child process: the environment carries it there.
        os.environ["BENCH_INDUCTOR_OPTIONS"] = args.inductor_options
    if args.regions is not None:
        os.environ["BENCH_REGIONS"] = args.regions  # the warm-start probe reads it too
    if os.environ.get("BENCH_REGIONS"):
        from framefarm.renderers import accel

        accel.REPEATED_BLOCKS = tuple(name.strip() for name in os.environ["BENCH_REGIONS"].split(",") if name.strip())
        accel.REGIONS_VERSION = f"bench-{len(accel.REPEATED_BLOCKS)}"
    if os.environ.get("BENCH_INDUCTOR_OPTIONS"):
        from framefarm.renderers import accel

        accel.INDUCTOR_OPTIONS = json.loads(os.environ["BENCH_INDUCTOR_OPTIONS"])
    if args.probe_warm_start:
        print(json.dumps(probe_warm_start(json.loads(args.probe_warm_start))), flush=True)
        return 0
    jobs = [j for j in args.jobs.split(",") if j]
    unknown = [j for j in jobs if j not in RUNNERS]
    if unknown:
        parser.error(f"unknown job(s) {unknown}; choose from {', '.join(JOBS)}")

    import torch

    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no GPU visible: run with --tiny on a CPU")
    os.environ["FRAMEFARM_DEVICE"] = device
    if args.tiny:
        torch.set_num_threads(1)  # toy sizes: threads only contend (and a shared CI box has 2 cores)
    size = TINY if args.tiny else FULL
    if args.v2v_batch or args.v2v_frames:
        from dataclasses import replace

        size = replace(size, v2v_batch=args.v2v_batch or size.v2v_batch, v2v_frames=args.v2v_frames or size.v2v_frames)
    dtype = torch.float32 if args.tiny else torch.float16
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    document: dict = {"benchmark": "bench_gpu", "tiny": args.tiny, **environment(torch, device)}
    document["matmul_ceiling_tflops"] = round(
        matmul_ceiling(torch, device, dtype, 512 if args.tiny else 8192), 3)
    document["ceiling_what"] = "fp32 512³" if args.tiny else "fp16 8192³ (random data, median of 10)"
    document["records"] = []
    from framefarm.renderers import accel

    document["inductor_options"] = accel.INDUCTOR_OPTIONS
    document["compiled_regions"] = list(accel.REPEATED_BLOCKS)
    print(f"{document['device']}: matmul ceiling {document['matmul_ceiling_tflops']} TFLOP/s", flush=True)
    if args.profile and device == "cuda":
        document["sdpa_backends"] = sdpa_backends(torch)
        print(json.dumps(document["sdpa_backends"]), flush=True)

    with tempfile.TemporaryDirectory(prefix="framefarm-gpu-bench-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("FRAMEFARM_CACHE_DIR", str(work / "cache"))
        started = time.perf_counter()
        models = build_models(work / "library", size, torch, device, with_xl="sdxl_img2img" in jobs,
                              with_motion="animatediff" in jobs)
        document["build_models_s"] = round(time.perf_counter() - started, 1)
        bench = Bench(torch, device, dtype, size, models, work, {j for j in args.compile.split(",") if j},
                      document["matmul_ceiling_tflops"], out if args.profile else None, args.compare_per_frame_vae,
                      args.compare_sync_decode, args.compile_spec, args.compare_inline_noise, args.warm_start,
                      {j for j in args.eager.split(",") if j}, args.short_jobs or args.tiny, args.check_eager,
                      args.compare_noise_threads, args.compare_lockstep_drivers, args.compare_pageable_noise,
                      tuple(switch for switch, on in (("host_copies", args.compare_host_copies),
                                                      ("control_embedding", args.compare_control_embedding)) if on),
                      args.v2v_chunk, args.skip_baselines, warm_start_variants(args), out)
        for job in jobs:
            started = time.perf_counter()
            try:
                record = RUNNERS[job](bench)
            except Exception as exc:  # one job's failure must not lose the others' numbers
                record = {"job": job, "error": f"{type(exc).__name__}: {exc}"}
            record["job_wall_s"] = round(time.perf_counter() - started, 1)
            document["records"].append(record)
            (out / f"{args.name}.json").write_text(json.dumps(document, indent=2) + "\n")
            print(json.dumps(record), flush=True)
    print(f"{'job':15} {'fps':>8} {'base':>8} {'×':>6} {'TFLOP/s':>8} {'ceiling':>8} {'GiB':>6}")
    for r in document["records"]:
        if "error" in r:
            print(f"{r['job']:15} ERROR {r['error']}")
            continue
        print(f"{r['job']:15} {r['frames_per_s']:8.2f} {r.get('baseline_frames_per_s') or 0:8.2f} "
              f"{r.get('speedup_vs_baseline') or 0:6.2f} {r['achieved_tflops']:8.1f} {r['fraction_of_ceiling']:8.1%} "
              f"{r['peak_mem_gib'] or 0:6.1f}")
    return 0 if all("error" not in r for r in document["records"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
