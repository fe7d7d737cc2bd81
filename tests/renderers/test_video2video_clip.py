"""video2video over a real 2-second clip (H.264 at 12 fps, resampled to the job's 4 fps) with two ControlNet units,
through the Prefect flow and the tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from tests.renderers.jobs import v2v_job
from tests.renderers.test_deforum_chain import frame_hashes

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_two_second_clip_with_two_controlnet_units_renders(tmp_path, models_dir):
    from framefarm.flows.render import render_job
    from framefarm.images import decode_png
    from framefarm.renderers.testcard import source_testcard
    from framefarm.video import probe_video
    from framefarm.video.encode import write_video_frames

    clip = write_video_frames((source_testcard(i, 96, 64, 12) for i in range(24)), tmp_path / "clip.mp4", width=96,
                         height=64, fps=12)
    assert probe_video(clip).frames == 24
    job = v2v_job(models_dir, f'source.video="{clip}"', "fps=4",
                  'controlnet=[{model = "tiny-canny", preprocessor = "canny", weight = 0.9}, '
                  '{model = "tiny-shuffle", preprocessor = "shuffle", weight = 0.5, guidance_end = 0.7}]')
    result = render_job(job, backend="diffusers", out=str(tmp_path / "out"), chunk_size=4)
    assert (result.frames, result.rendered) == (8, 8)  # 2 s at 4 fps
    info = probe_video(result.video)
    assert (info.frames, info.width, info.height) == (8, 64, 64)
    frames = frame_hashes(tmp_path / "out" / job.name / "frames")
    assert len(set(frames.values())) == 8
    # The source was resampled: source frame 1 is clip frame 3 (12 → 4 fps), not clip frame 1.
    source_1 = decode_png((tmp_path / "out" / job.name / "source" / "000001.png").read_bytes()).astype(int)
    near = {i: np.abs(source_1 - source_testcard(i, 96, 64, 12)[:, 16:80].astype(int)).mean() for i in (1, 3)}
    assert near[3] < near[1]
    again = render_job(job, backend="diffusers", out=str(tmp_path / "out"), chunk_size=8)
    assert again.rendered == 0 and frame_hashes(tmp_path / "out" / job.name / "frames") == frames
