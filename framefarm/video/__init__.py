"""Finishing: ffmpeg encode (every delivery preset), decode and probe, upscaling, interpolation, loops, audio.

Argv lists, owned process lifetimes, errors with stderr. :func:`finish` is the stage's one entry point (the
``encode`` command and the render flow both call it); docs/finishing.md describes it.
"""

from framefarm.video.decode import decode_frames, probe_video
from framefarm.video.encode import encode_frames, output_name
from framefarm.video.ffmpeg import ffmpeg_exe, require_encoders
from framefarm.video.finish import FinishResult, finish

__all__ = ["FinishResult", "decode_frames", "encode_frames", "ffmpeg_exe", "finish", "output_name", "probe_video",
           "require_encoders"]
