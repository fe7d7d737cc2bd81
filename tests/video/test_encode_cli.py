"""The ``framefarm encode`` contract, run as a user runs it: a subprocess, exit codes, the path as the last line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from framefarm.video import probe_video
from framefarm.video.decode import decode_audio
from tests.video.conftest import click_file, pattern_frames


def framefarm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "framefarm", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def last_line(run: subprocess.CompletedProcess[str]) -> Path:
    return Path(run.stdout.strip().splitlines()[-1])


def test_encode_prints_the_path_last_and_adds_the_codecs_container(tmp_path, frames_dir):
    folder = frames_dir(pattern_frames(6))
    run = framefarm("encode", str(folder), "--codec", "prores", "--fps", "25", "-o", "deliver/shot", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    path = last_line(run)
    assert path == Path("deliver/shot.mov") and (tmp_path / path).is_file()
    info = probe_video(tmp_path / path)
    assert (info.frames, info.width, info.height, info.pix_fmt) == (6, 64, 48, "yuv422p10le")
    assert "6 frames, 64x48 @ 25 fps" in run.stderr and "verified" in run.stderr


def test_without_o_the_output_lands_beside_the_frames_with_a_descriptive_name(tmp_path, frames_dir):
    folder = frames_dir(pattern_frames(8), name="shot_010")
    sound = click_file(tmp_path / "click.wav", 0.2)
    run = framefarm("encode", str(folder), "--codec", "hapq", "--fps", "8", "--interpolate", "2", "--loop", "wrap",
                    "--bpm", "120", "--audio", str(sound), "--audio-offset", "-0.1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    path = last_line(run)
    # 8 frames at 8 fps looped and doubled: 16 frames at 16 fps = 1 s = 2 beats at 120 BPM.
    assert path == tmp_path / "shot_010_64x48_16fps_16f_120bpm_2beats_hapq.mov"
    assert probe_video(path).frames == 16 and probe_video(path).has_audio
    assert abs(len(decode_audio(path)) / 48000 - 1.0) < 1 / 16


def test_png_sequence_into_a_folder(tmp_path, frames_dir):
    folder = frames_dir(pattern_frames(4))
    run = framefarm("encode", str(folder), "--codec", "png", "--fps", "25", "--upscale", "2", "-o", "seq",
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = tmp_path / last_line(run)
    assert out.is_dir() and len(list(out.glob("*.png"))) == 4


def test_bad_codec_exits_2_with_a_message_not_a_traceback(tmp_path, frames_dir):
    folder = frames_dir(pattern_frames(2))
    run = framefarm("encode", str(folder), "--codec", "avi", "--fps", "25", cwd=tmp_path)
    assert run.returncode == 2
    assert "--codec: is not an encode preset (got 'avi'). Use one of: h264, h265, prores" in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""


def test_other_invalid_input_exits_2(tmp_path, frames_dir):
    folder = frames_dir(pattern_frames(9))
    cases = [
        (["--fps", "25", "-o", "x.mp4", "--codec", "hap"], "hap writes .mov files, not .mp4"),
        ([], "--fps: is needed"),
        (["--fps", "25", "--loop", "wrap", "--bpm", "128"], "beats at 128 BPM and 25 fps, not a whole number"),
        (["--fps", "25", "--upscale", "magic:2"], "is not an upscale spec"),
        (["--fps", "25", "--codec", "gif", "--audio", "none.wav"], "cannot go into animated GIF"),
    ]
    for args, message in cases:
        run = framefarm("encode", str(folder), *args, cwd=tmp_path)
        assert run.returncode == 2, (args, run.stderr)
        assert message in run.stderr.replace("\n", " "), (args, run.stderr)
        assert "Traceback" not in run.stderr
    run = framefarm("encode", str(tmp_path / "nowhere"), "--fps", "25", cwd=tmp_path)
    assert run.returncode == 2 and "is not a folder" in run.stderr


def test_a_framefarm_render_folder_knows_its_fps(tmp_path, frames_dir):
    folder = frames_dir(pattern_frames(3), name="frames")
    (tmp_path / "job.json").write_text('{"name": "tunnel", "fps": 30}')
    run = framefarm("encode", str(folder), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # <render>/<job>/frames → <render>/<job>/<job>_64x48_30fps_3f.mp4, where the render flow puts its video too.
    assert last_line(run) == tmp_path / f"{tmp_path.name}_64x48_30fps_3f.mp4"
