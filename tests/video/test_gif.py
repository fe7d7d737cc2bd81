"""GIF timing as ffmpeg writes it: whole-centisecond delays that vary, a total that keeps the planned length."""

from __future__ import annotations

from collections import Counter

import pytest

from framefarm.errors import InputError, RenderError
from framefarm.job import job_from_preset
from framefarm.video.codecs import get_codec
from framefarm.video.finish import finish
from framefarm.video.gif import gif_delays, gif_duration
from framefarm.video.verify import verify_output
from tests.video.conftest import pattern_frames
from tests.video.test_encode_cli import framefarm, last_line


@pytest.mark.parametrize("fps", [24, 30, 60])
def test_96_frames_encode_and_verify_at_24_30_and_60_fps(tmp_path, fps):
    result = finish(pattern_frames(96, 32, 24), tmp_path, fps=fps, codec="gif", name="clip")
    assert result.verification is not None and result.verification.ok, result.verification
    assert result.path.name == f"clip_32x24_{fps}fps_96f.gif"
    assert result.duration == pytest.approx(96 / fps)
    delays = gif_delays(result.path)
    assert len(delays) == 96
    assert abs(sum(delays) / 100 - 96 / fps) <= 1 / fps  # the whole clip keeps its planned length
    assert max(delays) - min(delays) <= 1  # each frame within a centisecond of the others


def test_the_delays_are_read_from_the_file_as_ffmpeg_wrote_them(tmp_path):
    result = finish(pattern_frames(96, 32, 24), tmp_path, fps=24, codec="gif", name="clip")
    # 1/24 s is 4.17 cs: four frames of 4 cs, then one of 5, …: 96 frames play exactly 4.00 s.
    assert Counter(gif_delays(result.path)) == {4: 80, 5: 16}
    assert gif_duration(result.path) == 4.0


def test_a_gif_whose_timing_is_off_fails_verification(tmp_path):
    result = finish(pattern_frames(96, 32, 24), tmp_path, fps=24, codec="gif", name="clip")
    checked = verify_output(result.path, codec=get_codec("gif"), frames=96, width=32, height=24, fps=12)
    assert checked.problems == ("plays 4.00 s (the sum of its frame delays), planned 8.00 s",)


def test_the_encode_command_writes_a_verified_gif(tmp_path, frames_dir):
    folder = frames_dir(pattern_frames(96, 32, 24))
    run = framefarm("encode", str(folder), "--codec", "gif", "--fps", "30", "-o", "loop", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert last_line(run).name == "loop.gif" and "verified" in run.stderr
    assert gif_duration(tmp_path / "loop.gif") == pytest.approx(3.2)


def test_a_rate_no_gif_can_play_is_refused_before_rendering(tmp_path):
    with pytest.raises(InputError, match=r"fps: is faster than a GIF can play .*100 fps at most"):
        finish(pattern_frames(4, 32, 24), tmp_path, fps=120, codec="gif", name="clip")
    assert not list(tmp_path.iterdir())
    with pytest.raises(InputError, match="faster than a GIF can play"):
        job_from_preset("zoom-tunnel", ["fps=60", "output.codec=gif", "output.interpolate=2"])
    assert job_from_preset("zoom-tunnel", ["fps=60", "output.codec=gif"]).output.codec == "gif"


def test_a_file_that_is_no_gif_is_a_render_error(tmp_path):
    (tmp_path / "x.gif").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(RenderError, match="is not a GIF"):
        gif_delays(tmp_path / "x.gif")
    (tmp_path / "cut.gif").write_bytes(b"GIF89a" + bytes(7) + b"\x2c" + bytes(4))
    with pytest.raises(RenderError, match="cut short"):
        gif_delays(tmp_path / "cut.gif")
