"""Speed levers (framefarm.renderers.accel): the ones on by default keep frames within PIXEL_TOLERANCE, LoRAs still
reach fused projections, and the settings parse strictly. Tiny models on CPU, real renders."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from framefarm.errors import InputError
from framefarm.renderers.accel import (
    ACCEL_ENV, PIXEL_TOLERANCE, Acceleration, accelerate_model, batch_size_for_memory, refresh_fused_projections,
)
from framefarm.renderers.models.loader import clear_cache
from tests.renderers.jobs import v2v_job
from tests.renderers.test_diffusers_renderer import max_diff, render


def _render_with(monkeypatch, setting: str | None, job):
    """Render ``job`` from freshly loaded models with ``$FRAMEFARM_ACCEL`` = ``setting`` (None: the defaults)."""
    clear_cache()  # the levers are applied once per loaded model: start from unaccelerated weights
    if setting is None:
        monkeypatch.delenv(ACCEL_ENV, raising=False)
    else:
        monkeypatch.setenv(ACCEL_ENV, setting)
    try:
        return render(job)
    finally:
        clear_cache()


def test_default_levers_keep_frames_within_tolerance(monkeypatch, models_dir):
    job = v2v_job(models_dir, frames=4)  # SD1.5 img2img + one ControlNet, 2 Euler a steps, batch of 4
    plain = _render_with(monkeypatch, "none", job)
    fast = _render_with(monkeypatch, None, job)
    drift = max_diff(plain, fast)
    print(f"max abs pixel difference, default levers vs none: {drift}")
    assert sorted(fast) == sorted(plain) == [0, 1, 2, 3]
    assert drift <= PIXEL_TOLERANCE


def test_a_lora_reaches_the_fused_projections_and_is_restored(monkeypatch, models_dir):
    lora_job = v2v_job(models_dir, 'prompts.0="a watercolor cat <lora:tinylora:1.0>"', frames=4, controlnet=False)
    plain_job = v2v_job(models_dir, frames=4, controlnet=False)
    unfused = _render_with(monkeypatch, "none", lora_job)
    clear_cache()
    monkeypatch.setenv(ACCEL_ENV, "fuse_qkv")
    try:
        before = render(plain_job)
        fused = render(lora_job)  # LoRA fused into to_q/to_k/to_v after the QKV fusion
        after = render(plain_job)  # LoRA restored: the fused layers must follow again
    finally:
        clear_cache()
    assert max_diff(unfused, fused) <= PIXEL_TOLERANCE  # without the refresh the LoRA would be missing here
    assert max_diff(before, fused) > PIXEL_TOLERANCE
    assert all(np.array_equal(before[i], after[i]) for i in before)


def test_levers_are_applied_once_and_a_second_setting_is_refused():
    from diffusers import UNet2DConditionModel

    from tests.fixtures.tiny_models import SD15_UNET

    unet = UNet2DConditionModel(**SD15_UNET).eval()
    report = accelerate_model(unet, Acceleration())
    assert report.levers == ["channels_last", "fuse_qkv"]
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert accelerate_model(unet, Acceleration()).levers == []  # idempotent
    with pytest.raises(InputError, match="one FRAMEFARM_ACCEL per worker"):
        accelerate_model(unet, Acceleration(fuse_qkv=False))
    attention = next(m for m in unet.modules() if hasattr(m, "to_qkv"))
    with torch.no_grad():
        attention.to_q.weight.add_(1.0)
    assert refresh_fused_projections(unet) > 0
    assert torch.equal(attention.to_qkv.weight[: attention.to_q.weight.shape[0]], attention.to_q.weight)


def test_settings_parse_strictly(monkeypatch):
    monkeypatch.delenv(ACCEL_ENV, raising=False)
    assert Acceleration.from_env() == Acceleration()
    monkeypatch.setenv(ACCEL_ENV, "none")
    assert Acceleration.from_env().fingerprint() == "plain"
    monkeypatch.setenv(ACCEL_ENV, "channels_last,compile=model")
    chosen = Acceleration.from_env()
    assert (chosen.channels_last, chosen.fuse_qkv, chosen.compile, chosen.compile_scope) == (True, False, True, "model")
    monkeypatch.setenv(ACCEL_ENV, "compile=model:reduce-overhead")
    chosen = Acceleration.from_env()
    assert (chosen.compile_scope, chosen.compile_mode) == ("model", "reduce-overhead")
    assert chosen.fingerprint() == "compile-model-reduce-overhead"
    monkeypatch.setenv(ACCEL_ENV, "compile=:default")
    assert (Acceleration.from_env().compile_scope, Acceleration.from_env().compile_mode) == ("blocks", None)
    monkeypatch.setenv(ACCEL_ENV, "compile=model:fastest")
    with pytest.raises(InputError, match=r"is not a torch.compile mode \(got 'fastest'\)\. Use one of reduce-overhead"):
        Acceleration.from_env()
    monkeypatch.setenv(ACCEL_ENV, "tome")
    with pytest.raises(InputError, match="unknown lever 'tome'"):
        Acceleration.from_env()
    with pytest.raises(InputError, match="is not a compile scope"):
        Acceleration(compile_scope="layers")


def test_batch_size_for_memory():
    gib = 1024 ** 3
    assert batch_size_for_memory(2 * gib, free_bytes=100 * gib, fixed_bytes=5 * gib) == 40
    assert batch_size_for_memory(200 * gib, free_bytes=100 * gib) == 1
    assert batch_size_for_memory(1, free_bytes=100 * gib, cap=64) == 64
    with pytest.raises(ValueError, match="bytes_per_frame must be positive"):
        batch_size_for_memory(0, free_bytes=gib)


def _per_frame_vae(monkeypatch):
    """The renderer as it was before the VAE slices: diffusers encodes each frame in its own call, and each frame is
    decoded alone (with its NaN checks)."""
    from framefarm.renderers.diffusers import denoise, vae as vae_module

    monkeypatch.setattr(denoise, "encode_sources",
                        lambda vae, pixels, generators, slice_size: vae_module.to_tensor(pixels))
    monkeypatch.setattr(denoise, "queue_decode", lambda vae, latents, frames, slice_size, lock=None:
                        vae_module.PendingFrames.ready({
                            frame: vae_module.decode_latents(vae, latents[k:k + 1], frame=frame)
                            for k, frame in enumerate(frames)}))


def test_vae_slices_keep_frames_within_tolerance_and_slices_of_one_are_exact(monkeypatch, models_dir):
    from framefarm.renderers.diffusers import vae

    job = v2v_job(models_dir, frames=4)  # 64×64: one slice holds the whole batch of 4
    assert vae.vae_slice(job.width, job.height) >= 4
    sliced = render(job)
    with monkeypatch.context() as patch:
        patch.setattr(vae, "VAE_SLICE_PIXELS", 1)  # one frame per VAE call
        single = render(job)
    with monkeypatch.context() as patch:
        _per_frame_vae(patch)
        before = render(job)
    drift = max_diff(before, sliced)
    print(f"max abs pixel difference, VAE slices vs one frame per VAE call: {drift}")
    assert sorted(sliced) == sorted(before) == [0, 1, 2, 3]
    assert drift <= PIXEL_TOLERANCE
    # The same arithmetic as diffusers' encode + the per-frame decode, step by step: identical at slice size 1.
    assert all(np.array_equal(single[i], before[i]) for i in before)


def test_vae_slice_sizes():
    from framefarm.renderers.diffusers.vae import vae_slice

    assert vae_slice(512, 512) == 8
    assert vae_slice(1024, 1024) == 2
    assert vae_slice(2048, 2048) == 1
    assert vae_slice(64, 64) == 512


def test_a_broken_frame_in_a_slice_is_decoded_again_alone(monkeypatch):
    from diffusers import AutoencoderKL

    from framefarm.errors import RenderError
    from framefarm.renderers.diffusers import vae as vae_module
    from tests.fixtures.tiny_models import VAE

    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE).eval()
    half = AutoencoderKL(**VAE).eval().to(torch.float16)
    half.load_state_dict({k: v.half() for k, v in vae.state_dict().items()})
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    alone = []
    real = vae_module.decode_latents
    monkeypatch.setattr(vae_module, "decode_latents",
                        lambda v, latent, *, frame: alone.append(frame) or real(v, latent, frame=frame))

    frames = vae_module.decode_frames(vae, latents, [10, 11, 12], slice_size=2)
    assert sorted(frames) == [10, 11, 12] and alone == []  # nothing broken: one pass, no frame decoded alone
    for k, frame in enumerate([10, 11, 12]):
        one = real(vae, latents[k:k + 1], frame=frame)
        assert frames[frame].shape == one.shape and frames[frame].dtype == np.uint8
        assert max_diff({0: frames[frame]}, {0: one}) <= PIXEL_TOLERANCE

    latents[1] = 3e4  # overflows float16 inside the decoder: that frame alone goes to float32
    frames = vae_module.decode_frames(half, latents, [10, 11, 12], slice_size=2)
    assert alone == [11] and frames[11].max() > 0 and half.dtype == torch.float16
    latents[1] = float("nan")
    with pytest.raises(RenderError, match="frame 11 decoded to NaN even with the VAE in float32"):
        vae_module.decode_frames(vae, latents, [10, 11, 12], slice_size=2)


def test_fetching_pixels_a_batch_late_changes_nothing_and_keeps_a_finished_batch_when_the_next_fails(
        monkeypatch, models_dir):
    """Each video2video batch's pixels reach the host only after the next batch is queued (PendingFrames): the same
    bytes as fetching them at once, and a failure in batch n+1 still hands over batch n's frames first."""
    from framefarm.animation.plan import plan_job
    from framefarm.renderers import get_renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers import denoise
    from framefarm.renderers.diffusers.kinds import video2video
    from framefarm.renderers.diffusers.vae import PendingFrames
    from framefarm.renderers.testcard import source_testcard

    job = v2v_job(models_dir, frames=12)  # three batches of 4 in one chunk
    deferred = render(job, chunk_size=12)
    with monkeypatch.context() as patch:
        queued = denoise.queue_decode
        patch.setattr(denoise, "queue_decode", lambda *args, **kwargs: PendingFrames.ready(
            queued(*args, **kwargs).result()))
        at_once = render(job, chunk_size=12)
    assert sorted(deferred) == list(range(12))
    assert all(np.array_equal(deferred[i], at_once[i]) for i in deferred)

    renderer = get_renderer("diffusers")
    chunk = plan_job(job, renderer=renderer.id, chunk_size=12).chunks[0]

    def frames_until_failure(context):
        handed = []
        with pytest.raises(RuntimeError, match="illegal memory access|source frame 8 is unreadable"):
            for frame, image in renderer.render(chunk, chunk.frames, context):
                handed.append(frame)
                assert np.array_equal(image, deferred[frame])
        return handed

    # The GPU call of batch 1 fails: batch 0's frames are handed over first.
    calls = []
    original = video2video.render_batch

    def second_batch_fails(components, job, chunk, members, *args, **kwargs):
        calls.append(members[0])
        if members[0] == 4:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return original(components, job, chunk, members, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(video2video, "render_batch", second_batch_fails)
        source = lambda i: source_testcard(i, job.width, job.height, job.fps)  # noqa: E731
        assert frames_until_failure(RenderContext(job=job, source_frame=source)) == [0, 1, 2, 3]
    assert calls == [0, 4]

    # Batch 2's inputs (read ahead on the helper thread) fail: batches 0 and 1 are handed over first.
    def unreadable_from_8(i):
        if i >= 8:
            raise RuntimeError(f"source frame {i} is unreadable")
        return source_testcard(i, job.width, job.height, job.fps)

    assert frames_until_failure(RenderContext(job=job, source_frame=unreadable_from_8)) == list(range(8))


def test_compile_caches_live_in_a_folder_the_worker_owns(monkeypatch, tmp_path):
    from framefarm.renderers.accel import COMPILE_CACHE_ENV, compile_cache_dir, use_compile_cache

    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", COMPILE_CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FRAMEFARM_CACHE_DIR", str(tmp_path / "cache"))
    assert compile_cache_dir() == tmp_path / "cache" / "torch-compile"
    folder = use_compile_cache()
    assert folder.is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(folder / "triton")
    # A worker's own settings win: an explicit folder, and Inductor's variable where the operator set it.
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "operator"))
    monkeypatch.delenv("TRITON_CACHE_DIR")
    assert use_compile_cache() == tmp_path / "mine"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "operator")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "mine" / "triton")


# ---------------------------------------------------------------------------------------------------------------
# compile=auto: a job compiles on a GPU when it is long enough to win its compilation back


def _deforum(frames: int, *extra: str):
    from framefarm.job import job_from_preset

    return job_from_preset("zoom-tunnel", [f"frames={frames}", *extra])


def test_compile_auto_is_the_default_and_parses(monkeypatch):
    monkeypatch.delenv(ACCEL_ENV, raising=False)
    assert Acceleration.from_env().compile == "auto"
    # The default's fingerprint (in every frame key) is what it was before compile=auto: keys of the jobs that do
    # not compile did not change.
    assert Acceleration.from_env().fingerprint() == "channels_last+fuse_qkv"
    monkeypatch.setenv(ACCEL_ENV, "channels_last,compile=auto")
    assert (Acceleration.from_env().compile, Acceleration.from_env().fuse_qkv) == ("auto", False)
    monkeypatch.setenv(ACCEL_ENV, "channels_last,fuse_qkv")
    assert Acceleration.from_env().compile is False
    with pytest.raises(InputError, match="is not a compile setting"):
        Acceleration(compile="sometimes")


def test_the_compile_rule_counts_the_frames_the_gpu_denoises():
    from framefarm.renderers.accel import COMPILE_RULES, compile_choice, denoised_frames

    auto, never, always = Acceleration(), Acceleration(compile=False), Acceleration(compile=True)
    rule = COMPILE_RULES["deforum"]
    long_chain = _deforum(rule.min_frames)
    assert denoised_frames(long_chain) == rule.min_frames
    assert compile_choice(long_chain, auto) == ("model", "reduce-overhead")  # CUDA graphs for the launch-bound chain
    assert compile_choice(_deforum(rule.min_frames - 1), auto) is None
    # Cadence 3: a third of the frames are diffused, the in-betweens cost no UNet time.
    assert denoised_frames(_deforum(rule.min_frames, "cadence=3")) == -(-rule.min_frames // 3)
    assert compile_choice(_deforum(rule.min_frames, "cadence=3"), auto) is None
    # Shots restart the cadence groups: each shot's first frame is diffused.
    assert denoised_frames(_deforum(10, "cadence=3", "shots=[0, 4]")) == 2 + 2
    assert compile_choice(_deforum(8), always) == ("blocks", None)  # an explicit compile compiles every job
    assert compile_choice(long_chain, never) is None
    v2v_rule = COMPILE_RULES["video2video"]
    assert compile_choice(_v2v_frames(v2v_rule.min_frames), auto) == ("blocks", None)
    assert compile_choice(_v2v_frames(v2v_rule.min_frames - 1), auto) is None
    # A strength that changes from frame to frame splits batches into groups of changing sizes, each size compiling
    # anew: such a job stays eager however long it is.
    assert compile_choice(_v2v_frames(v2v_rule.min_frames, 'motion.strength="0:(0.5), 100:(0.7)"'), auto) is None


def _v2v_frames(frames: int, *extra: str):
    from framefarm.job import job_from_preset

    return job_from_preset("video-restyle", [f"frames={frames}", *extra])


def test_auto_never_compiles_on_a_cpu_but_an_explicit_compile_does():
    from framefarm.renderers.accel import device_choice

    choice = ("blocks", None)
    assert device_choice(choice, "cpu", Acceleration()) is None
    assert device_choice(choice, "cuda", Acceleration()) == choice
    assert device_choice(choice, "cuda:1", Acceleration()) == choice
    assert device_choice(choice, "cpu", Acceleration(compile=True)) == choice


def test_the_compile_choice_enters_the_frame_keys(monkeypatch, models_dir):
    """A job that compiles (on a GPU) gets other frame keys than the same job rendered eager, so a resumed render
    or a second worker with other levers never mixes the two; a job that does not compile keeps its keys."""
    from framefarm.animation.plan import plan_job
    from framefarm.job_inputs import input_hashes
    from framefarm.renderers.accel import COMPILE_RULES

    frames = COMPILE_RULES["deforum"].min_frames
    job = _deforum(frames, f'model.models_dir="{models_dir}"', 'model.checkpoint="tiny-sd15"')
    short = _deforum(frames - 1, f'model.models_dir="{models_dir}"', 'model.checkpoint="tiny-sd15"')

    def keys(job, setting):
        if setting is None:
            monkeypatch.delenv(ACCEL_ENV, raising=False)
        else:
            monkeypatch.setenv(ACCEL_ENV, setting)
        hashes = input_hashes(job, "diffusers")
        return hashes, plan_job(job, renderer="diffusers@test", input_hashes=hashes).frame_keys

    auto_hashes, auto_keys = keys(job, None)
    eager_hashes, eager_keys = keys(job, "channels_last,fuse_qkv")
    assert auto_hashes["accel.compile"] == "model:reduce-overhead" and "accel.compile" not in eager_hashes
    assert all(auto_keys[f] != eager_keys[f] for f in range(frames))
    short_auto, short_eager = keys(short, None)[1], keys(short, "channels_last,fuse_qkv")[1]
    assert short_auto == short_eager


def test_compiled_forwards_are_kept_and_switched_per_job():
    """A process's models are shared by its jobs: switching a model between a job's compiled forward and another
    job's eager one must neither recompile nor leave the wrong one on."""
    from diffusers import UNet2DConditionModel

    from framefarm.renderers.accel import use_compiled
    from tests.fixtures.tiny_models import SD15_UNET

    unet = UNet2DConditionModel(**SD15_UNET).eval()
    graphs = ("model", "reduce-overhead")
    assert use_compiled(unet, graphs) == 1
    whole = unet._compiled_call_impl
    assert whole is not None
    assert use_compiled(unet, None) == 0
    assert unet._compiled_call_impl is None  # eager again: nn.Module.__call__ runs forward
    regions = use_compiled(unet, ("blocks", None))
    blocks = [m for m in unet.modules() if m._compiled_call_impl is not None]
    assert regions == len(blocks) > 1 and unet not in blocks
    assert use_compiled(unet, graphs) == 1
    assert unet._compiled_call_impl is whole  # the same compiled callable: nothing compiled twice
    assert all(m._compiled_call_impl is None for m in blocks)


def test_a_compiled_jobs_last_partial_batch_is_filled_up_to_the_batch_size(monkeypatch, models_dir):
    """Compiled kernels are specialised to a batch size: the last, partial batch of a compiled video2video job runs
    at the full batch size (copies of its last frame, dropped), so the models are not compiled again for it. The
    full batches are untouched; the partial one stays within the drift between batch sizes. (Compiling itself takes
    minutes on a CPU: here the models stay eager, only the grouping is the compiled path's.)"""
    from framefarm.renderers import accel
    from framefarm.renderers.diffusers import denoise
    from framefarm.renderers.diffusers.kinds import video2video
    from tests.renderers.test_diffusers_renderer import DRIFT_BOUND

    job = v2v_job(models_dir, frames=6)  # batch size 4: batches 0–3 and 4–5
    eager = _render_with(monkeypatch, "channels_last,fuse_qkv", job)
    groups: list[list[int]] = []
    real_denoise = denoise.denoise_group

    def spy(components, job, group):
        groups.append(list(group.frames))
        return real_denoise(components, job, group)

    monkeypatch.setattr(video2video, "denoise_group", spy)
    monkeypatch.setattr(accel, "use_compiled", lambda model, choice: 0)
    filled = _render_with(monkeypatch, "channels_last,fuse_qkv,compile", job)
    assert groups == [[0, 1, 2, 3], [4, 5, -1, -2]]
    assert sorted(filled) == list(range(6))  # the copies are not frames
    assert all(np.array_equal(filled[f], eager[f]) for f in range(4))
    assert max_diff({f: filled[f] for f in (4, 5)}, eager) <= DRIFT_BOUND


def test_motion_modules_are_compiled_whole_and_the_region_set_is_in_the_keys(monkeypatch):
    """Regional compilation of AnimateDiff's motion UNet compiles each motion transformer whole (its GroupNorm and
    the permutes around its blocks included), not only the blocks inside; and a compiled job's keys name the
    region set, so frames compiled with another set are never mixed into a resumed job."""
    from diffusers import UNet2DConditionModel, UNetMotionModel

    from framefarm.renderers.accel import COMPILE_RULES, REGIONS_VERSION, compile_key, use_compiled
    from tests.fixtures.tiny_models import SD15_UNET
    from tests.fixtures.tiny_motion import build_adapter

    unet = UNetMotionModel.from_unet2d(UNet2DConditionModel(**SD15_UNET), build_adapter()).eval()
    use_compiled(unet, ("blocks", None))
    compiled = {type(m).__name__ for m in unet.modules() if m._compiled_call_impl is not None}
    motion = [m for m in unet.modules() if type(m).__name__ == "AnimateDiffTransformer3D"]
    assert motion and all(m._compiled_call_impl is not None for m in motion)
    inner = [b for m in motion for b in m.modules() if b is not m]
    assert all(b._compiled_call_impl is None for b in inner)  # nothing compiled twice
    assert {"AnimateDiffTransformer3D", "Transformer2DModel", "ResnetBlock2D"} <= compiled

    monkeypatch.delenv(ACCEL_ENV, raising=False)
    long_v2v = _v2v_frames(COMPILE_RULES["video2video"].min_frames)
    assert compile_key(long_v2v) == f"blocks-r{REGIONS_VERSION}:default"
    assert compile_key(_deforum(240)) == "model:reduce-overhead"  # the whole model: no region set


def test_vae_blocks_are_compiled_whole_unet_blocks_by_their_parts():
    """Regional compilation of an SD1.5 UNet and VAE: every VAE block is compiled whole (its samplers' convolutions,
    bias adds and upsampling inside one graph), every UNet block by its transformers and ResNets (graphs shared
    across blocks of one shape); no module is compiled inside another compiled one."""
    from framefarm.renderers.accel import use_compiled
    from tests.fixtures.tiny_models import build_sd15

    unet, vae, _ = build_sd15(seed=0)
    for model in (unet, vae):
        use_compiled(model, ("blocks", None))
    compiled = [m for model in (unet, vae) for m in model.modules() if m._compiled_call_impl is not None]
    names = {type(m).__name__ for m in compiled}
    assert {"DownEncoderBlock2D", "UNetMidBlock2D", "UpDecoderBlock2D", "Transformer2DModel", "ResnetBlock2D"} <= names
    assert all(block._compiled_call_impl is not None for block in (*vae.encoder.down_blocks, *vae.decoder.up_blocks))
    unet_blocks = (*unet.down_blocks, unet.mid_block, *unet.up_blocks)
    assert all(block._compiled_call_impl is None for block in unet_blocks)
    assert all(part._compiled_call_impl is not None for block in unet_blocks for part in block.resnets)
    assert all(part._compiled_call_impl is not None for block in unet_blocks for part in getattr(block, "attentions", ()))
    for module in compiled:
        assert all(inner._compiled_call_impl is None for inner in module.modules() if inner is not module)
