"""Speed levers for the diffusers renderers, applied once to the cached models of a worker process.

What each lever does, and what it costs in pixels (the CPU tests in ``tests/renderers/test_accel.py`` measure it
with the tiny models; the figures below are the bounds they assert):

* ``channels_last`` (on by default): UNet, ControlNet and VAE weights in NHWC memory order, so cuDNN runs its
  tensor-core convolution kernels without transposing every activation. Same arithmetic, different summation order
  inside the convolution: pixels may move by rounding, bounded at ``PIXEL_TOLERANCE``.
* ``fuse_qkv`` (on by default): diffusers' ``fuse_qkv_projections`` — one matmul for q, k, v (self-attention) and one
  for k, v (cross-attention) instead of three/two small ones. The fused weight is the concatenation of the originals,
  so each output element is the same dot product; kept in step with framefarm's LoRA fusing by
  :func:`refresh_fused_projections`, which :class:`framefarm.renderers.diffusers.patches.ModelPatches` calls after
  every LoRA change (a LoRA changes ``to_q`` etc., which the fused layer would not see otherwise).
* SDPA: diffusers' default attention processors already call ``torch.nn.functional.scaled_dot_product_attention``
  (flash / memory-efficient kernels on a GPU); :func:`attention_backends` reports which processors are in use so a
  benchmark can show it, nothing is switched.
* CFG in one batch: diffusers' pipelines already concatenate the unconditional and conditional halves into one
  UNet call; nothing to do here.
* ``compile`` (``auto`` by default): ``torch.compile`` of the repeated blocks (regional compilation: every
  ``Transformer2DModel`` and ``ResnetBlock2D`` of UNet, ControlNet and VAE, see ``REPEATED_BLOCKS``), or of the
  whole forward with CUDA graphs for the launch-bound Deforum chain. Compiled kernels fuse elementwise work into the
  matmuls/convolutions and change rounding, and the first batch pays a minute or two of compilation, so ``auto``
  compiles a job only on a GPU and only when the job is long enough to win the compilation back
  (:data:`COMPILE_RULES`, :func:`compile_choice`; never on a CPU, where compiling takes minutes). The choice is a
  function of the job alone, and it enters the job's frame keys (:func:`compile_key`), so a resumed render or a
  second worker never mixes compiled and eager frames of one job. The compiled kernels are cached on disk in a
  folder the worker owns (:func:`use_compile_cache`), so the next process on the host starts warm.
  ``FRAMEFARM_ACCEL=compile`` compiles every job (``compile=model:reduce-overhead`` etc. pick the scope and mode);
  a lever list without ``compile`` never compiles.
* ``dtype``: the job's ``model.dtype`` (fp16 on a GPU by default; ``bfloat16`` trades mantissa for the range that
  keeps SDXL's VAE out of fp16 overflow) — chosen in :mod:`framefarm.renderers.models.loader`, not here.

Levers that change images by design (DeepCache, token merging, TAESD, LCM) are not here: none is on by default.

The levers that can move a pixel enter the renderer's version (:meth:`Acceleration.fingerprint`), so frames rendered
with and without them get different keys and a resumed render never mixes the two.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from framefarm.errors import InputError

ACCEL_ENV = "FRAMEFARM_ACCEL"
COMPILE_CACHE_ENV = "FRAMEFARM_COMPILE_CACHE"
# Largest per-channel change (in 0…255 steps) the default levers may cause in a tiny-model CPU render; the tests
# assert it. Two steps: the rounding of a different summation order, which a random tiny model carries through the
# VAE decoder; how far depends on the CPU's kernels (measured 1 on one x86 machine, 2 on another), never visible.
PIXEL_TOLERANCE = 2
LEVERS = ("channels_last", "fuse_qkv", "compile")
# torch.compile modes a worker may ask for (None: the default mode). "reduce-overhead" replays CUDA graphs: for
# batch-1 work such as a Deforum chain, whose time goes to kernel launches; the max-autotune modes take many minutes.
COMPILE_MODES = (None, "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# The diffusers renderer encodes and decodes with the VAE in slices of frames, not one frame per call: not a
# switch (≤ PIXEL_TOLERANCE, tested like the levers), but it moves pixels by rounding, so it is in every frame key.
VAE_TAG = "vae=slices"
# The block classes regional compilation compiles one by one, outermost first (a block nested in one already
# compiled is not compiled again). They repeat with few distinct shapes, so dynamo reuses each compiled graph across
# instances (the ControlNet's ResNets and transformers share the UNet's).
# * The VAE's blocks are compiled whole (DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D): that takes in what
#   lies between their ResNets — the down- and upsamplers' convolutions with their bias adds (cuDNN leaves an eager
#   convolution's bias to a separate pass over its output: at 512², hundreds of MB a slice), the nearest-neighbour
#   upsampling and padding, the mid-block attention's GroupNorm. Measured on video2video at batch 32 with one
#   ControlNet: on an H100, every down / mid / up block of UNet, ControlNet and VAE compiled whole took 44.0 % →
#   45.2 % of the matmul ceiling (same host and hour); on an H200 that set gave 47.7 % but a second process's warm
#   start of 18.3 s, and the VAE's blocks with the UNet's up blocks 47.5 % with 16.6 s.
# * The UNet's and ControlNet's blocks are compiled by their parts (transformers and ResNets), not whole: a whole
#   block traces its transformers again inside its own graph, where the parts share one graph per shape with every
#   other block (the ControlNet's with the UNet's, the up blocks' transformers with the down blocks'). Dynamo's
#   tracing is what a warm process still pays for each graph: with the UNet's up blocks whole, the UNet's and
#   ControlNet's first call took 2.8 s more to trace (full-size SD1.5, measured on a CPU with backend "eager",
#   which times dynamo alone: 28 graphs, 9.5 s in dynamo against 32 graphs, 6.7 s), for the skip concatenations
#   and three upsamplers at ≤ 64².
#   The motion UNet's own blocks (…BlockMotion) are not in the list either: its transformers and ResNets are.
# * The spatial transformer is compiled whole (Transformer2DModel: GroupNorm, proj_in, its blocks, proj_out,
#   residual) where no block around it is: compiling only its inner BasicTransformerBlocks left the GroupNorm and the
#   NCHW ↔ channels-last copies around the 1×1 projections eager (an H200 profile, video2video batch 32: layout
#   copies 0.43 s of 3.0 s of kernel time per batch; compiled whole: 0.11 s, and 0.34 s less kernel time in all).
# * AnimateDiff's motion modules are compiled whole for the same reason (AnimateDiffTransformer3D: GroupNorm over
#   frames, the permutes to frame sequences and back, proj_in/out around its BasicTransformerBlocks): compiling only
#   the inner blocks left that GroupNorm eager and its permutes as copies, 0.30 s of 2.62 s of kernel time per
#   16-frame window (an H100 profile, 92 % busy: the time is in the kernels).
REPEATED_BLOCKS = ("DownEncoderBlock2D", "UNetMidBlock2D", "UpDecoderBlock2D", "Transformer2DModel",
                   "AnimateDiffTransformer3D", "BasicTransformerBlock", "ResnetBlock2D", "TemporalBasicTransformerBlock")
# Which regions `blocks` compiles, and with which Inductor settings: part of a compiled job's frame keys
# (compile_key), since another set of regions or kernels rounds differently; raise it whenever REPEATED_BLOCKS or
# INDUCTOR_OPTIONS changes.
REGIONS_VERSION = 4
# Inductor settings for compiles in torch.compile's default mode (the regions of video2video and AnimateDiff).
INDUCTOR_OPTIONS: dict[str, Any] = {}


@dataclass(frozen=True)
class Acceleration:
    """Which speed levers a worker applies to its models.

    Attributes:
        channels_last: NHWC weights for UNet / ControlNet / VAE (≤ ``PIXEL_TOLERANCE``).
        fuse_qkv: fused attention projections in UNet and ControlNet (≤ ``PIXEL_TOLERANCE``).
        compile: ``torch.compile`` of the denoiser (changes rounding): ``True`` for every job, ``"auto"`` (the
            default) where :data:`COMPILE_RULES` say a job gains, ``False`` never.
        compile_scope: ``"blocks"`` (regional: the repeated blocks) or ``"model"`` (the whole forward).
        compile_mode: ``torch.compile``'s mode (``None``: default; ``"max-autotune"`` takes many minutes).
    """

    channels_last: bool = True
    fuse_qkv: bool = True
    compile: bool | Literal["auto"] = "auto"
    compile_scope: Literal["blocks", "model"] = "blocks"
    compile_mode: str | None = None

    def __post_init__(self) -> None:
        if self.compile not in (True, False, "auto"):
            raise InputError(ACCEL_ENV, self.compile, "is not a compile setting", "Use compile, compile=auto or leave "
                                                                                  "compile out of the list")
        if self.compile_scope not in ("blocks", "model"):
            raise InputError(ACCEL_ENV, self.compile_scope, "is not a compile scope", "Use blocks or model")
        if self.compile_mode not in COMPILE_MODES:
            raise InputError(ACCEL_ENV, self.compile_mode, "is not a torch.compile mode",
                             f"Use one of {', '.join(m for m in COMPILE_MODES if m)}")

    @classmethod
    def from_env(cls) -> Acceleration:
        """``$FRAMEFARM_ACCEL``: unset → the defaults; ``none`` → every lever off; else a comma list of the levers
        to turn on (``channels_last,fuse_qkv,compile``; ``compile=model`` for whole-model compilation,
        ``compile=model:reduce-overhead`` with a torch.compile mode: CUDA graphs, for launch-bound batch-1 chains;
        ``compile=auto``: the default rule)."""
        raw = os.environ.get(ACCEL_ENV)
        if raw is None or raw.strip() == "":
            return cls()
        chosen: dict[str, Any] = {name: False for name in LEVERS}
        for item in (part.strip() for part in raw.split(",")):
            if item in ("", "none"):
                continue
            name, _, value = item.partition("=")
            if name not in LEVERS:
                raise InputError(ACCEL_ENV, raw, f"names the unknown lever {name!r}",
                                 f"Use none or a comma list of {', '.join(LEVERS)}")
            chosen[name] = True
            if name == "compile" and value == "auto":
                chosen["compile"] = "auto"
            elif name == "compile" and value:
                scope, _, mode = value.partition(":")
                chosen["compile_scope"] = scope or "blocks"
                chosen["compile_mode"] = None if mode in ("", "default") else mode
        return cls(**chosen)

    def fingerprint(self) -> str:
        """The pixel-affecting levers, for the renderer version (and so every frame key). ``compile=auto`` is not
        in it: whether a job compiles is decided per job and enters that job's keys (:func:`compile_key`), so the
        keys of jobs that do not compile stay those of a worker that never compiles."""
        on = [name for name in LEVERS if getattr(self, name) is True]
        if self.compile is True:
            on[-1] = f"compile-{self.compile_scope}-{self.compile_mode or 'default'}"
        return "+".join(on) or "plain"


@dataclass
class AccelReport:
    """What :func:`accelerate_model` did to one model (for logs and the benchmark's JSON)."""

    levers: list[str] = field(default_factory=list)
    compiled_regions: int = 0
    seconds: float = 0.0


def accelerate_model(model, accel: Acceleration) -> AccelReport:
    """Apply ``accel`` to a UNet / ControlNet / VAE in place, once (a second call is a no-op).

    Compilation is per job, not here (:func:`use_compiled`, called with :func:`compile_choice`'s answer before each
    group of frames).
    """
    accel = replace(accel, compile=False, compile_scope="blocks", compile_mode=None)  # compilation is per job
    applied = getattr(model, "_framefarm_accel", None)
    if applied is not None:
        if applied != accel:
            # The models are cached per process; two settings in one process would make frames depend on which
            # job ran first.
            raise InputError(ACCEL_ENV, accel.fingerprint(), f"differs from the levers already applied to this "
                                                             f"process's models ({applied.fingerprint()})",
                             "Use one FRAMEFARM_ACCEL per worker process")
        return AccelReport()
    import torch

    started = time.perf_counter()
    report = AccelReport()
    if accel.channels_last and _has_conv(model):
        model.to(memory_format=torch.channels_last)
        report.levers.append("channels_last")
    if accel.fuse_qkv and hasattr(model, "fuse_qkv_projections") and _fusable(model):
        model.fuse_qkv_projections()
        report.levers.append("fuse_qkv")
    model._framefarm_accel = accel
    report.seconds = time.perf_counter() - started
    return report


def refresh_fused_projections(model) -> int:
    """Copy ``to_q``/``to_k``/``to_v`` into the fused ``to_qkv``/``to_kv`` again (after a LoRA changed them).

    Returns the number of layers refreshed. The fused layers read the concatenation of the originals, so after this
    the fused model computes exactly what the unfused one would with the current weights.
    """
    import torch

    count = 0
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "fused_projections", False) is not True:
                continue
            if hasattr(module, "to_qkv"):
                module.to_qkv.weight.copy_(torch.cat([module.to_q.weight, module.to_k.weight, module.to_v.weight]))
                count += 1
            if hasattr(module, "to_kv"):
                module.to_kv.weight.copy_(torch.cat([module.to_k.weight, module.to_v.weight]))
                count += 1
    return count


def attention_backends(model) -> dict[str, int]:
    """Attention processor class name → how many layers use it (``…2_0`` processors call SDPA)."""
    counts: dict[str, int] = {}
    for processor in getattr(model, "attn_processors", {}).values():
        name = type(processor).__name__
        counts[name] = counts.get(name, 0) + 1
    return counts


def batch_size_for_memory(bytes_per_frame: float, *, free_bytes: float, fixed_bytes: float = 0.0,
                          headroom: float = 0.85, cap: int = 256) -> int:
    """The largest batch whose activations fit: ``(free·headroom − fixed) / bytes_per_frame``, at least 1.

    ``bytes_per_frame`` is measured, not guessed (the benchmark takes it from the peak memory of batches 1 and 2).
    The result is advice for ``job.batch_size`` at planning time: the renderer never changes a job's batch size on
    its own, since batch composition is part of what fixes a frame's pixels.
    """
    if bytes_per_frame <= 0:
        raise ValueError(f"bytes_per_frame must be positive, got {bytes_per_frame}")
    fits = int((free_bytes * headroom - fixed_bytes) // bytes_per_frame)
    return max(1, min(cap, fits))


# ---------------------------------------------------------------------------------------------------------------


def _has_conv(model) -> bool:
    import torch

    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def _fusable(model) -> bool:
    # diffusers refuses to fuse models with added KV projections; AnimateDiff's motion UNet has no fuse method.
    return not any("Added" in type(p).__name__ for p in getattr(model, "attn_processors", {}).values())


def compile_cache_dir() -> Path:
    """Where this worker keeps torch.compile's on-disk caches: ``$FRAMEFARM_COMPILE_CACHE``, else
    ``torch-compile/`` in framefarm's cache folder (``$FRAMEFARM_CACHE_DIR``, default ``~/.cache/framefarm``)."""
    from framefarm.renderers.models.hashing import cache_dir

    explicit = os.environ.get(COMPILE_CACHE_ENV)
    return Path(explicit) if explicit else cache_dir() / "torch-compile"


def use_compile_cache() -> Path:
    """Point Inductor's and Triton's caches at :func:`compile_cache_dir`, unless the worker set them itself.

    Why: compiling the SD1.5 UNet at batch 32 took 48.7 s on an H200, and a second process reading Inductor's on-disk
    cache 6.9 s; by default that cache lies in ``/tmp``, which container restarts and tmp cleaners empty, so a worker
    keeps it in a folder it owns. Must run before the first compilation (Inductor fixes its folder then).
    """
    folder = compile_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    return folder


def use_compiled(model, choice: CompileChoice | None) -> int:
    """Make ``model`` run compiled as ``choice`` says (``(scope, mode)``), or eager with ``None``.

    Each choice's compiled callables are kept on the model, so a process that renders a long job (compiled) and then
    a short one (eager) switches back and forth without compiling again: the models are cached per process and
    shared by its jobs, and a job's frames must not depend on which job the process rendered before. Compilation
    itself happens at the first forward pass. Returns the number of compiled regions now active.
    """
    active = getattr(model, "_framefarm_compiled_as", None)
    variants = getattr(model, "_framefarm_compiled", None)
    if variants is None:
        variants = {}
        model._framefarm_compiled = variants
    if active == choice:
        return len(variants.get(choice, ()))
    for module, _ in variants.get(active, ()):
        module._compiled_call_impl = None  # what torch.nn.Module.__call__ checks: None runs the eager forward
    if choice is not None:
        if choice not in variants:
            variants[choice] = _compile_regions(model, *choice)
        for module, compiled in variants[choice]:
            module._compiled_call_impl = compiled
    model._framefarm_compiled_as = choice
    return len(variants.get(choice, ())) if choice is not None else 0


def _compile_regions(model, scope: str, mode: str | None) -> list:
    """``(module, compiled call)`` pairs: the whole model, or each outermost repeated block. The same callable
    :meth:`torch.nn.Module.compile` would install, kept so it can be switched off and on again."""
    import torch

    use_compile_cache()

    # Every distinct (block class, input shape) pair is one compiled graph; SD1.5's UNet + ControlNet have ~20
    # distinct ResNet shapes, more than dynamo's default of 8 recompiles per code object.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 128)
    if scope == "model":
        return [(model, torch.compile(model._call_impl, dynamic=False, **_mode_or_options(mode)))]
    regions: list = []
    compiled: list[str] = []
    for name, module in model.named_modules():  # parents come before their children
        if type(module).__name__ not in REPEATED_BLOCKS:
            continue
        if any(name.startswith(prefix + ".") for prefix in compiled):
            continue  # inside a compiled region already
        regions.append((module, torch.compile(module._call_impl, dynamic=False, **_mode_or_options(mode))))
        compiled.append(name)
    return regions


def _mode_or_options(mode: str | None) -> dict[str, Any]:
    """torch.compile's ``mode`` or, for the default mode, ``options`` (it takes one of the two, not both)."""
    if mode is None and INDUCTOR_OPTIONS:
        return {"options": dict(INDUCTOR_OPTIONS)}
    return {"mode": mode}


# ---------------------------------------------------------------------------------------------------------------
# When a job compiles


CompileChoice = tuple[str, "str | None"]  # (scope, torch.compile mode)


@dataclass(frozen=True)
class CompileRule:
    """When ``compile=auto`` compiles a job of one kind, and how.

    Attributes:
        scope, mode: what is compiled (``"blocks"``/``"model"``) and torch.compile's mode.
        min_frames: the job's length from which it compiles — frames the GPU denoises (a Deforum job's diffused
            frames: cadence in-betweens cost no UNet time).
        steady_settings: compile only when strength, CFG and ControlNet weights are the same for every frame.
            Compiled kernels are specialised to a batch size, and frames with other settings are split off into
            groups of their own: a schedule that varies them would compile every new group size again.
    """

    scope: str
    mode: str | None
    min_frames: int
    steady_settings: bool = False


# The rule, from one H200 with full-size SD1.5 (random weights), default levers against compiled, one process
# compiling cold (benchmarks/results/gpu/README.md): a job compiles when the time compilation saves over its frames
# is at least what a cold compilation costs, rounded up to a round number. A warm host (the compile cache filled by
# an earlier process, 7–14 s) wins sooner; the rule does not count on it, so a fresh worker never loses.
# * Deforum chain (one frame per UNet call, launch-bound): CUDA graphs of the whole UNet (reduce-overhead), compiled
#   cold in ~52 s, 1.8 → 4.2 frames/s, so ~0.32 s saved per diffused frame: even after 164 diffused frames; 240.
# * video2video (batches of 16–32): regional compile, ~71 s cold, 7.0 → 10.8 frames/s (0.05 s per frame): 1 440
#   frames; 1 500.
# * AnimateDiff (16-frame windows with CFG): regional compile of the motion UNet, ~114 s cold; the bare motion
#   UNet went from 29 % to 43 % of the FLOP ceiling (~0.08 s per frame at 4 frames/s): ~1 400 frames; 1 500.
COMPILE_RULES = {
    "deforum": CompileRule(scope="model", mode="reduce-overhead", min_frames=240),
    "video2video": CompileRule(scope="blocks", mode=None, min_frames=1500, steady_settings=True),
    "animatediff": CompileRule(scope="blocks", mode=None, min_frames=1500),
}


def denoised_frames(job) -> int:
    """The frames of ``job`` the GPU denoises: every frame, but only the diffused ones of a Deforum job with
    cadence (each shot restarts its cadence groups)."""
    if job.kind != "deforum":
        return int(job.frames)
    cadence = max(1, int(getattr(job, "cadence", 1)))
    starts = [shot.start for shot in (getattr(job, "shot_list", None) or ())] or [0]
    bounds = zip(starts, [*starts[1:], job.frames])
    return sum(-(-(stop - start) // cadence) for start, stop in bounds)


def compile_choice(job, accel: Acceleration | None = None) -> CompileChoice | None:
    """How ``job`` is compiled with the worker's levers (``accel``; default: ``$FRAMEFARM_ACCEL``), or ``None``
    (eager). A function of the job and the levers only, so every worker of a job decides alike (a CPU worker then
    leaves an ``auto`` choice eager: :func:`device_choice`)."""
    accel = accel or worker_acceleration()
    if accel.compile is True:
        return (accel.compile_scope, accel.compile_mode)
    if accel.compile is False:
        return None
    rule = COMPILE_RULES.get(job.kind)
    if rule is None or denoised_frames(job) < rule.min_frames:
        return None
    if rule.steady_settings and _settings_vary(job):
        return None
    return (rule.scope, rule.mode)


def _settings_vary(job) -> bool:
    """Whether a schedule gives frames of ``job`` different strength, CFG or ControlNet weights."""
    from framefarm.animation.schedules import evaluate_job_schedules

    for name, column in evaluate_job_schedules(job).items():
        if name in ("strength", "cfg_scale") or (name.startswith("controlnet.") and name.endswith(".weight")):
            if len(set(float(x) for x in column)) > 1:
                return True
    return False


def compile_key(job) -> str | None:
    """What the frame keys of ``job`` say about compilation beyond the renderer version: the ``auto`` rule's choice
    (``"model:reduce-overhead"``), or ``None`` when it has nothing to add (eager, or an explicit ``compile``, which
    the renderer version carries already)."""
    accel = worker_acceleration()
    if accel.compile != "auto":
        return None
    choice = compile_choice(job, accel)
    if choice is None:
        return None
    regions = f"-r{REGIONS_VERSION}" if choice[0] == "blocks" else ""
    return f"{choice[0]}{regions}:{choice[1] or 'default'}"


def device_choice(choice: CompileChoice | None, device: str, accel: Acceleration | None = None
                  ) -> CompileChoice | None:
    """``choice`` on ``device``: ``auto`` never compiles on a CPU (minutes of compilation for no gain there); an
    explicit ``compile`` does what it is told."""
    accel = accel or worker_acceleration()
    if choice is not None and accel.compile == "auto" and not str(device).startswith("cuda"):
        return None
    return choice


# ---------------------------------------------------------------------------------------------------------------
# The worker's levers


def worker_acceleration() -> Acceleration:
    """This worker's levers: ``$FRAMEFARM_ACCEL`` (see :meth:`Acceleration.from_env`)."""
    return Acceleration.from_env()


def version_tag() -> str:
    """``accel=<fingerprint>`` for a renderer's version string (``accel=invalid`` if the variable is malformed:
    the render itself then fails with the readable error, not the import)."""
    try:
        return f"accel={worker_acceleration().fingerprint()};{VAE_TAG}"
    except InputError:
        return f"accel=invalid;{VAE_TAG}"
