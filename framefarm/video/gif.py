"""GIF timing as the file holds it: each frame's delay, read from its Graphic Control Extension.

A GIF frame lasts a whole number of centiseconds, so most frame rates can't be kept frame by frame. ffmpeg's GIF muxer
keeps them on average instead: each delay is the rounded difference of the frames' timestamps, so 24 fps becomes
4, 4, 4, 4, 5 cs … (96 frames: 80 × 4 + 16 × 5 = 4.00 s, as planned), 30 fps 3, 3, 4 …, 60 fps 2, 2, 1 …. A fixed
per-frame rate, which ffmpeg's header reports (100 / the shortest delay), says nothing about how long the clip
plays; the sum of the delays does. imageio-ffmpeg ships no ffprobe, and ffmpeg's own ``Duration`` line is rounded
to 10 ms, so the delays are read here from the file, after the GIF89a specification
(https://www.w3.org/Graphics/GIF/spec-gif89a.txt, sections 17–23).
"""

from __future__ import annotations

from pathlib import Path

from framefarm.errors import InputError, RenderError

# A frame lasts at least one centisecond, so no GIF plays faster than this.
GIF_MAX_FPS = 100.0
_TRAILER, _EXTENSION, _IMAGE = 0x3B, 0x21, 0x2C
_GRAPHIC_CONTROL = 0xF9


def _skip_sub_blocks(data: bytes, at: int) -> int:
    """The offset after a chain of data sub-blocks (each a length byte, then that many bytes; 0 ends the chain)."""
    while data[at]:
        at += data[at] + 1
    return at + 1


def _colour_table_size(packed: int) -> int:
    """Bytes of the colour table a packed-fields byte announces (none when its top bit is clear)."""
    return 3 * (2 << (packed & 0x07)) if packed & 0x80 else 0


def gif_delays(path: str | Path) -> list[int]:
    """Every frame's delay in centiseconds, in order (0 for a frame without a Graphic Control Extension).

    Raises:
        RenderError: the file is not a GIF or is cut short.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise RenderError(f"{path} is not a GIF (it starts with {data[:6]!r})")
    delays: list[int] = []
    pending = 0  # a Graphic Control Extension applies to the next image only
    try:
        at = 13 + _colour_table_size(data[10])  # header (6) + logical screen descriptor (7) + global colour table
        while data[at] != _TRAILER:
            if data[at] == _EXTENSION:
                if data[at + 1] == _GRAPHIC_CONTROL:
                    pending = int.from_bytes(data[at + 4:at + 6], "little")  # after block size and packed byte
                at = _skip_sub_blocks(data, at + 2)
            elif data[at] == _IMAGE:
                at += 10 + _colour_table_size(data[at + 9])  # image descriptor + local colour table
                at = _skip_sub_blocks(data, at + 1)  # after the LZW minimum code size
                delays.append(pending)
                pending = 0
            else:
                raise RenderError(f"{path}: unexpected byte {data[at]:#04x} at offset {at}: not a valid GIF")
    except IndexError:
        raise RenderError(f"{path} is cut short after {len(delays)} frame(s)") from None
    return delays


def gif_duration(path: str | Path) -> float:
    """How long one pass of the GIF plays, in seconds: the sum of its frames' delays."""
    return sum(gif_delays(path)) / 100.0


def check_gif_rate(fps: float, *, field: str = "fps") -> None:
    """Refuse, before anything is rendered, a rate no GIF can play (it would play slower than planned)."""
    if fps > GIF_MAX_FPS:
        raise InputError(field, fps, f"is faster than a GIF can play (a frame lasts at least 1 cs: {GIF_MAX_FPS:g} "
                         "fps at most)", "Use 50 fps or less for a GIF (browsers slow 1 cs frames to 10 cs), or "
                         "another codec (webm, h264)")
