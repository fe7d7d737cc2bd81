"""The Deforum chain on the diffusers backend, with the tiny models: imported settings → Prefect flow → video,
byte-identical across chunk sizes and after an in-process resume; 3D depth from a local transformers folder;
hybrid video; the errors for what the chain cannot do."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from framefarm.errors import InputError
from framefarm.images import encode_png

# A small Deforum settings file, as Deforum saves it: 2D zoom/rotate, cadence 2 (every other frame diffused),
# LAB colour coherence, a prompt change, noise, contrast and anti-blur schedules.
SETTINGS = {
    "W": 64, "H": 64, "seed": 7, "sampler": "Euler a", "steps": 3, "seed_behavior": "iter", "max_frames": 6,
    "fps": 8, "animation_mode": "2D", "prompts": {"0": "a red cat", "3": "a blue dog"}, "zoom": "0:(1.04)",
    "angle": "0:(2)", "translation_x": "0:(1)", "strength_schedule": "0:(0.6)", "noise_schedule": "0:(0.03)",
    "contrast_schedule": "0:(1.0)", "amount_schedule": "0:(0.2)", "diffusion_cadence": 2, "color_coherence": "LAB",
    "batch_name": "chain",
}


def frame_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("[0-9]*.png"))}


def imported_job(tmp_path: Path, models_dir: str, *extra: str):
    """``framefarm import-deforum`` on SETTINGS, then the job file loaded with the tiny models."""
    from typer.testing import CliRunner

    from framefarm.cli import app
    from framefarm.job import load_job

    (tmp_path / "settings.txt").write_text(json.dumps(SETTINGS))
    result = CliRunner().invoke(app, ["import-deforum", str(tmp_path / "settings.txt"), "-o",
                                      str(tmp_path / "job.toml")])
    assert result.exit_code == 0, result.output
    return load_job(tmp_path / "job.toml", [f'model.models_dir="{models_dir}"', 'model.checkpoint="tiny-sd15"',
                                            *extra])


@pytest.mark.usefixtures("prefect_server")
def test_imported_settings_render_into_a_video_identical_across_chunk_sizes(tmp_path, models_dir):
    from framefarm.flows.render import render_job
    from framefarm.video import probe_video

    job = imported_job(tmp_path, models_dir)
    assert (job.kind, job.cadence, job.color_coherence.mode, job.frames) == ("deforum", 2, "LAB", 6)
    first = render_job(job, backend="diffusers", out=str(tmp_path / "a"), chunk_size=2)
    second = render_job(job, backend="diffusers", out=str(tmp_path / "b"), chunk_size=4)
    a = frame_hashes(tmp_path / "a" / job.name / "frames")
    assert len(a) == 6 and a == frame_hashes(tmp_path / "b" / job.name / "frames")
    assert len(set(a.values())) == 6  # the camera moves every frame: no two frames alike
    assert (first.rendered, second.rendered) == (6, 6)
    info = probe_video(first.video)
    assert (info.frames, info.width, info.height) == (6, 64, 64)

    # A rerun renders nothing; deleting the last three frames re-renders exactly those, from frame 2 in the store
    # (mid-cadence: D_1 is diffused again from frame 1), identical to the uninterrupted render.
    for name in ("000003.png", "000004.png", "000005.png"):
        (tmp_path / "a" / job.name / "frames" / name).unlink()
    again = render_job(job, backend="diffusers", out=str(tmp_path / "a"), chunk_size=3)
    assert again.rendered == 3 and frame_hashes(tmp_path / "a" / job.name / "frames") == a


def chain_frames(job, frames=None, store=None):
    """Render a job's frames with the chain directly (no flow): ``{frame: image}``; ``store`` plays the frame store."""
    from framefarm.animation.plan import plan_job
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.kinds.deforum import render as render_deforum

    store = {} if store is None else store
    chunk = plan_job(job, renderer="test", chunk_size=job.frames).chunks[0]
    context = RenderContext.for_job(job, previous_frame=lambda i: store[i])
    for frame, image in render_deforum(chunk, list(frames if frames is not None else range(job.frames)), context):
        store[frame] = image
    return store


def small_job(models_dir: str, **fields):
    from framefarm.job import validate_job

    data = dict(kind="deforum", name="small", width=64, height=64, frames=3, fps=8, seed=3,
                prompts={"0": "a lighthouse"},
                model=dict(models_dir=models_dir, checkpoint="tiny-sd15", steps=2, sampler="Euler"))
    data.update(fields)
    return validate_job(data)


def test_3d_without_a_depth_model_folder_is_an_input_error(models_dir):
    job = small_job(models_dir, animation_mode="3D", motion=dict(translation_z="0:(2)"))
    with pytest.raises(InputError, match=r"depth\.algorithm: .*needs a depth model.*depth\.enabled = false"):
        chain_frames(job)


def save_tiny_depth_model(folder: Path) -> None:
    """A randomly initialised, tiny transformers DPT depth model, saved as a local folder (no hub)."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(0)
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                       image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 32, 32],
                       fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5], head_in_index=-1)
    DPTForDepthEstimation(config).eval().save_pretrained(folder)


def test_3d_warps_over_the_depth_of_a_local_depth_model(tmp_path, models_dir, monkeypatch):
    save_tiny_depth_model(tmp_path / "annotators" / "depth" / "Midas-3-Hybrid")
    monkeypatch.setenv("FRAMEFARM_ANNOTATORS", str(tmp_path / "annotators"))
    motion = dict(translation_z="0:(4)", rotation_3d_y="0:(1.5)", strength="0:(0.5)")
    with_depth = chain_frames(small_job(models_dir, animation_mode="3D", motion=motion))
    flat = chain_frames(small_job(models_dir, animation_mode="3D", motion=motion, depth=dict(enabled=False)))
    assert np.array_equal(with_depth[0], flat[0])  # frame 0 has nothing to warp
    assert not np.array_equal(with_depth[2], flat[2])  # the depth shapes the move
    resumed = chain_frames(small_job(models_dir, animation_mode="3D", motion=motion), frames=[2],
                           store={0: with_depth[0], 1: with_depth[1]})
    assert np.array_equal(resumed[2], with_depth[2])


def test_hybrid_video_flow_and_composite_and_init_image(tmp_path, models_dir):
    from framefarm.renderers.testcard import source_testcard

    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(3):
        (clip / f"{i:04d}.png").write_bytes(encode_png(source_testcard(i, 64, 64, 8)))
    hybrid = dict(video=str(clip), motion="Optical Flow", flow_method="DIS Medium", composite="Normal",
                  comp_alpha="0:(0.4)")
    frames = chain_frames(small_job(models_dir, hybrid=hybrid))
    plain = chain_frames(small_job(models_dir))
    assert all(not np.array_equal(frames[i], plain[i]) for i in range(3))
    # Hybrid's first frame is the init image (img2img of the clip's frame 0 at the strength), not txt2img.
    assert np.abs(frames[0].astype(int) - source_testcard(0, 64, 64, 8).astype(int)).mean() < \
        np.abs(plain[0].astype(int) - source_testcard(0, 64, 64, 8).astype(int)).mean()

    with pytest.raises(InputError, match=r"hybrid\.flow_method: needs a RAFT model.*got .RAFT.*DIS Medium"):
        chain_frames(small_job(models_dir, hybrid=hybrid | {"flow_method": "RAFT"}))


def test_noise_made_ahead_on_a_helper_thread_gives_the_same_frames(models_dir):
    """Each diffused frame's noise image is made on a helper thread while the previous frame diffuses: the same
    bytes as making it in line (it depends on the frame's seed and the size only), across a shot cut and cadence."""
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.kinds.deforum import DeforumChains

    job = small_job(models_dir, frames=7, cadence=2, shots=[0, 4], motion={"noise": "0:(0.2)", "zoom": "0:(1.05)"})

    def frames(noise_ahead: bool) -> tuple[dict[int, np.ndarray], list[int]]:
        store: dict[int, np.ndarray] = {}
        chain = DeforumChains(RenderContext.for_job(job, previous_frame=store.__getitem__), noise_ahead=noise_ahead)
        try:
            for frame in range(job.frames):
                store[frame] = chain.output(frame)
        finally:
            chain.close()
        return store, chain.noise_made_ahead

    ahead, made_ahead = frames(True)
    inline, made_inline = frames(False)
    # Diffused frames: 0, 2 (shot 0: starts at 0) and 4, 6 (shot 1). Frame 4 starts a shot: nothing made ahead for it.
    assert sorted(made_ahead) == [2, 6] and made_inline == []
    assert sorted(ahead) == list(range(7))
    assert all(np.array_equal(ahead[f], inline[f]) for f in ahead)
