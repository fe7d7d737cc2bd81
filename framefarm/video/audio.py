"""Muxing a sound track into a finished video: offset, then padded or trimmed to exactly the frames' duration.

The video stream is copied (never re-encoded); the audio is resampled to 48 kHz (the video world's rate) and shaped
by one filter chain, so what the file holds is exact to the sample:

* ``offset > 0`` — the sound starts ``offset`` seconds into the video (``adelay`` inserts real silence, which every
  player honours, instead of a container edit list that some ignore);
* ``offset < 0`` — the first ``-offset`` seconds of the file are skipped (``atrim``);
* then ``apad`` + ``atrim=end_sample=…``: silence pads a short track and a long one is cut, so the audio ends with
  the last frame (frames / fps seconds).

Offsets are counted in samples, so sync is exact to 1/48000 s; codec delays (AAC priming, Opus pre-skip) are
recorded in the container by ffmpeg and removed again by decoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framefarm.errors import InputError
from framefarm.video.codecs import Codec
from framefarm.video.decode import _header
from framefarm.video.ffmpeg import require_encoders, run_ffmpeg

AUDIO_RATE = 48000


@dataclass(frozen=True)
class AudioTrack:
    """A sound file to mux in, and where it starts relative to the first frame (seconds, may be negative)."""

    path: Path
    offset: float = 0.0

    @classmethod
    def checked(cls, path: str | Path, offset: float = 0.0, *, field: str = "audio") -> AudioTrack:
        """An :class:`AudioTrack` for a file that exists and holds an audio stream ffmpeg reads."""
        path = Path(path)
        if not path.is_file():
            raise InputError(field, str(path), "no such file", "Give a WAV, FLAC, MP3, AAC or any file ffmpeg reads")
        if "Audio:" not in _header(path):
            raise InputError(field, str(path), "has no audio stream ffmpeg can read",
                             "Give a WAV, FLAC, MP3, AAC or any file with a sound track")
        return cls(path=path, offset=float(offset))


def audio_filter(offset: float, duration: float, rate: int = AUDIO_RATE) -> str:
    """The ``-af`` chain placing the track at ``offset`` seconds and making it exactly ``duration`` seconds long."""
    chain = ["asetpts=PTS-STARTPTS"]
    if offset < 0:
        chain += [f"atrim=start={-offset:.6f}", "asetpts=PTS-STARTPTS"]
    chain.append(f"aresample={rate}")
    if offset > 0:
        chain.append(f"adelay=delays={round(offset * rate)}S:all=1")
    chain += ["apad", f"atrim=end_sample={round(duration * rate)}"]
    return ",".join(chain)


def mux_audio(video: Path, track: AudioTrack, out: Path, *, codec: Codec, duration: float) -> Path:
    """Write ``video``'s stream (copied) with ``track`` as its sound to ``out``; returns ``out``.

    Raises:
        InputError: the preset's format carries no audio (GIF, PNG sequence).
        RenderError: ffmpeg failed (command and stderr in the message).
    """
    if codec.audio_codec is None:
        raise InputError("audio", str(track.path), f"cannot go into {codec.label}: the format has no sound track",
                         "Use --codec h264, prores, hap … or leave out --audio")
    require_encoders(codec.audio_codec[1])
    run_ffmpeg(["-y", "-loglevel", "error", "-i", str(video), "-i", str(track.path),
                "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                "-af", audio_filter(track.offset, duration), *codec.audio_codec, "-ar", str(AUDIO_RATE),
                *codec.extra_output_args, str(out)],
               what=f"mux {track.path.name} into {out.name}")
    return out


def has_audio_stream(path: str | Path) -> bool:
    """Whether ``path`` holds an audio stream ffmpeg can read."""
    return "Audio:" in _header(Path(path))


def extract_audio(video: str | Path, out: str | Path, *, start: float, duration: float) -> Path:
    """Write ``duration`` seconds of ``video``'s first audio stream from ``start`` seconds to ``out`` as FLAC.

    FLAC because it is lossless (the finishing stage encodes the sound once, for the deliverable, not twice) and
    about half the size of WAV; the sample rate and channels are the source's. ``start`` seeks in the input
    (``-ss`` before ``-i``): with the audio decoded, ffmpeg cuts at the exact sample, counted from the start of the
    file, as the frame decoder counts frames from the first frame.
    """
    run_ffmpeg(["-y", "-loglevel", "error", "-ss", f"{max(start, 0.0):.6f}", "-i", str(video),
                "-t", f"{duration:.6f}", "-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", "flac", "-f", "flac",
                str(out)],
               what=f"extract the sound of {Path(video).name}")
    return Path(out)
