"""Whole renders through the Prefect flow with the diffusers backend and the tiny models (no mocks, no hub)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from framefarm.flows.render import render_job
from framefarm.images import decode_png
from framefarm.video import probe_video
from tests.renderers.jobs import v2v_job

pytestmark = pytest.mark.usefixtures("prefect_server")


def frame_hashes(root: Path, job: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / job / "frames").glob("*.png"))}


def test_lora_embedding_two_controlnets_chunk_sizes_4_and_8_are_byte_identical(tmp_path, models_dir, tiny_library):
    job = v2v_job(
        models_dir,
        'prompts.0="a tinystyle cat, (watercolor:1.3) <lora:tinylora:0.8>"',
        'controlnet=[{model = "tiny-canny", preprocessor = "canny", weight = 0.9}, '
        '{model = "tiny-shuffle", preprocessor = "shuffle", weight = 0.6, guidance_end = 0.8}]',
    )
    first = render_job(job, backend="diffusers", out=str(tmp_path / "a"), chunk_size=4)
    render_job(job, backend="diffusers", out=str(tmp_path / "b"), chunk_size=8)
    assert (first.frames, first.rendered) == (8, 8)
    a, b = frame_hashes(tmp_path / "a", job.name), frame_hashes(tmp_path / "b", job.name)
    assert len(a) == 8 and a == b
    assert len(set(a.values())) == 8  # every frame is its own (own seed, own source frame)
    info = probe_video(first.video)
    assert (info.frames, info.width, info.height) == (8, 64, 64)
    assert not tiny_library.pickle_marker.exists()


def test_merged_model_renders(tmp_path, models_dir, tiny_library):
    from typer.testing import CliRunner

    from framefarm.cli import app

    out = tiny_library.root / "models" / "Stable-diffusion" / "merged-e2e.safetensors"
    result = CliRunner().invoke(app, ["models", "merge", "tiny-sd15", "tiny-sd15-b", "--alpha", "0.5", "-o", str(out),
                                      "--dir", models_dir])
    assert result.exit_code == 0, result.output
    job = v2v_job(models_dir, frames=4, checkpoint="merged-e2e")
    render = render_job(job, backend="diffusers", out=str(tmp_path / "m"), chunk_size=4)
    assert probe_video(render.video).frames == 4
    merged = decode_png((tmp_path / "m" / job.name / "frames" / "000000.png").read_bytes())
    plain = render_job(v2v_job(models_dir, frames=4), backend="diffusers", out=str(tmp_path / "p"), chunk_size=4)
    assert probe_video(plain.video).frames == 4
    original = decode_png((tmp_path / "p" / job.name / "frames" / "000000.png").read_bytes())
    assert np.abs(merged.astype(int) - original.astype(int)).max() > 0


def test_sdxl_single_file_renders_with_an_sdxl_embedding(tmp_path, models_dir):
    job = v2v_job(models_dir, 'prompts.0="a tinyxl fox"', frames=4, controlnet=False, checkpoint="tiny-sdxl")
    result = render_job(job, backend="diffusers", out=str(tmp_path), chunk_size=4)
    assert result.rendered == 4
    info = probe_video(result.video)
    assert (info.frames, info.width, info.height) == (4, 64, 64)
