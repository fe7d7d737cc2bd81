"""Decode a sound file to PCM for analysis (audio-driven schedules): mono float32 samples at a chosen rate.

Any file ffmpeg reads works (WAV, FLAC, MP3, AAC, Opus, the sound track of a video). The binary is
:func:`framefarm.video.ffmpeg.ffmpeg_exe` and the command an argv list; the samples come back on stdout as raw
``f32le``, so nothing is written to disk. Channels are mixed down to mono and resampled by ffmpeg (``-ac 1 -ar``):
analysis needs neither stereo nor the file's own rate, and a fixed rate keeps the analysis windows the same length
for every file.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framefarm.errors import InputError
from framefarm.video.ffmpeg import ffmpeg_error, ffmpeg_exe

# 22.05 kHz keeps everything up to 11 kHz (kick, snare, hats' body): plenty for loudness and onsets, and half the
# samples of 44.1 kHz to push through the FFTs.
ANALYSIS_RATE = 22050
_NO_AUDIO_HINTS = ("matches no streams", "does not contain any stream", "Output file does not contain any stream")


@dataclass(frozen=True)
class Pcm:
    """Decoded sound: mono float32 ``samples`` (nominally in −1 … 1) at ``rate`` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate


def decode_pcm(path: str | Path, *, rate: int = ANALYSIS_RATE, start: float = 0.0, duration: float | None = None,
               field: str = "track") -> Pcm:
    """Decode the first audio stream of ``path`` to mono float32 at ``rate`` Hz.

    Args:
        path (`str | Path`): a file ffmpeg reads.
        rate (`int`, *optional*, defaults to 22050): sample rate of the result.
        start (`float`, *optional*, defaults to 0): seconds to skip at the start of the file.
        duration (`float`, *optional*): seconds to decode (the whole rest of the file by default).
        field (`str`, *optional*, defaults to ``"track"``): the name errors use for the file.

    Returns:
        A :class:`Pcm`.

    Raises:
        InputError: no such file, or it has no audio stream ffmpeg can read.
        RenderError: ffmpeg failed otherwise (the command and its stderr are in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(field, str(path), "no such file", "Give a WAV, FLAC, MP3, AAC or any file ffmpeg reads")
    if rate < 1000:
        raise InputError("rate", rate, "is too low for audio analysis", "Use 8000 Hz or more (default 22050)")
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    if start > 0:
        command += ["-ss", f"{start:.6f}"]
    command += ["-i", str(path)]
    if duration is not None:
        command += ["-t", f"{duration:.6f}"]
    command += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        if any(hint in stderr for hint in _NO_AUDIO_HINTS) or "Invalid data found" in stderr:
            raise InputError(field, str(path), "has no audio stream ffmpeg can read",
                             "Give a WAV, FLAC, MP3, AAC or any file with a sound track")
        raise ffmpeg_error(f"ffmpeg failed to decode the audio of {path} (exit {result.returncode})", command, stderr)
    samples = np.frombuffer(result.stdout, np.float32).copy()
    return Pcm(samples=samples, rate=rate)
