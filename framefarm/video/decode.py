"""Decode and probe videos with the ffmpeg binary alone (imageio-ffmpeg ships no ffprobe)."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framefarm.errors import InputError
from framefarm.video.ffmpeg import ffmpeg_error, ffmpeg_exe, reap

_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: .*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"([\d.]+) (?:fps|tbr)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
# "Video: hap (Hap1 / 0x31706148), rgb0(progressive), 256x144" → codec "hap", pixel format "rgb0".
_CODEC_PIX = re.compile(r"Video: (\w+)(?: \([^)]*\))*, (\w+)")
_AUDIO = re.compile(r"Audio: (\w+).*?, (\d+) Hz")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: decoded frame count, size, frame rate and whether it has an audio stream."""

    frames: int
    width: int
    height: int
    fps: float
    duration: float
    has_audio: bool
    codec: str = ""
    pix_fmt: str = ""
    audio_codec: str | None = None
    audio_rate: int | None = None


def _header(path: Path) -> str:
    # `ffmpeg -i file` with no output prints the stream summary on stderr and exits 1: that's the probe.
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                            capture_output=True, text=True, check=False)
    return result.stderr


def probe_video(path: str | Path, *, count: bool = True) -> VideoInfo:
    """Size, fps and (by decoding every frame, so it is exact) the frame count of a video file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("video", str(path), "no such file")
    header = _header(path)
    stream = _STREAM.search(header)
    if stream is None:
        raise InputError("video", str(path), "has no video stream ffmpeg can read", header.strip()[-500:])
    width, height = int(stream.group(1)), int(stream.group(2))
    video_line = next(line for line in header.splitlines() if "Video:" in line)
    fps_match = _FPS.search(video_line)
    duration_match = _DURATION.search(header)
    duration = 0.0
    if duration_match:
        h, m, s = duration_match.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    frames = sum(1 for _ in read_video_frames(path, width=width, height=height)) if count else -1
    codec_pix = _CODEC_PIX.search(video_line)
    audio = _AUDIO.search(header)
    return VideoInfo(frames=frames, width=width, height=height, fps=float(fps_match.group(1)) if fps_match else 0.0,
                     duration=duration, has_audio="Audio:" in header,
                     codec=codec_pix.group(1) if codec_pix else "", pix_fmt=codec_pix.group(2) if codec_pix else "",
                     audio_codec=audio.group(1) if audio else None, audio_rate=int(audio.group(2)) if audio else None)


def decode_audio(path: str | Path, *, rate: int = 48000) -> np.ndarray:
    """The first audio stream of ``path`` as mono float32 samples at ``rate`` Hz (decoder delays applied)."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
               "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise ffmpeg_error(f"ffmpeg failed to decode the audio of {path} (exit {result.returncode})", command,
                           result.stderr)
    return np.frombuffer(result.stdout, np.float32)


def read_video_frames(
    path: str | Path, *, width: int, height: int, fps: float | None = None, start_frame: int = 0,
    alpha: bool = False,
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames of ``width``×``height`` (scaled to cover and centre-cropped), resampled to ``fps``.

    With ``alpha`` the frames are RGBA (opaque where the video has no alpha channel).

    The ffmpeg process is killed if the caller stops iterating early.
    """
    filters = []
    if fps is not None:
        filters.append(f"fps={fps}")
    filters.append(f"scale={width}:{height}:force_original_aspect_ratio=increase:flags=lanczos")
    filters.append(f"crop={width}:{height}")
    if start_frame:
        filters.append(f"select=gte(n\\,{start_frame})")
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
               "-map", "0:v:0", "-vf", ",".join(filters), "-fps_mode", "passthrough",
               "-f", "rawvideo", "-pix_fmt", "rgba" if alpha else "rgb24", "-"]
    channels = 4 if alpha else 3
    size = width * height * channels
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
        try:
            while True:
                data = process.stdout.read(size)
                if len(data) < size:
                    break
                yield np.frombuffer(data, np.uint8).reshape(height, width, channels)
            code = process.wait()
            if code != 0:
                stderr.seek(0)
                raise ffmpeg_error(f"ffmpeg failed to decode {path} (exit {code})", command, stderr.read())
        finally:
            reap(process)
            process.stdout.close()
