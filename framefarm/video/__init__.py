"""Finishing: ffmpeg encode, decode and probe. Argv lists, owned process lifetimes, errors with stderr."""

from framefarm.video.decode import decode_frames, probe_video
from framefarm.video.encode import encode_frames, output_name
from framefarm.video.ffmpeg import ffmpeg_exe, require_encoders

__all__ = ["decode_frames", "encode_frames", "ffmpeg_exe", "output_name", "probe_video", "require_encoders"]
