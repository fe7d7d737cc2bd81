"""Finishing: ffmpeg encode (every delivery preset), decode and probe, upscaling, interpolation, loops, audio.

Argv lists, owned process lifetimes, errors with stderr. :func:`finish` is the stage's one entry point (the
``encode`` command and the render flow both call it); docs/finishing.md describes it.
"""

from framefarm.video.decode import probe_video, read_video_frames
from framefarm.video.encode import output_name, write_video_frames
from framefarm.video.ffmpeg import ffmpeg_exe, require_encoders
from framefarm.video.finish import FinishResult, finish

# The names before the ffmpeg functions were called read_/write_video_frames ("encode/decode frames" also means the
# VAE in renderers/); kept for callers that have not moved yet.
decode_frames = read_video_frames
encode_frames = write_video_frames

__all__ = ["FinishResult", "decode_frames", "encode_frames", "ffmpeg_exe", "finish", "output_name", "probe_video",
           "read_video_frames", "require_encoders", "write_video_frames"]
