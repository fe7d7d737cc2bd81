"""The OSC "clip ready" message: a finished clip announced to TouchDesigner, Resolume or any OSC tool over UDP.

OSC 1.0 (https://opensoundcontrol.stanford.edu/spec-1_0.html) in the few lines this needs, instead of a dependency:
a message is its address pattern, a type-tag string (``,`` then one letter per argument), then the arguments;
strings are ASCII, NUL-terminated and padded with NULs to a multiple of 4 bytes; ``i`` is a big-endian int32 and
``f`` a big-endian float32.

The message (address :data:`CLIP_READY`) carries, in order: path (s), fps (f), frames (i), BPM (f, 0 when the job
has none), beats (i, 0 when none), job name (s). In TouchDesigner an OSC In DAT shows it as one row; in Resolume,
map ``/framefarm/clip_ready`` in the OSC shortcuts.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from framefarm.errors import InputError

CLIP_READY = "/framefarm/clip_ready"


def _string(text: str) -> bytes:
    data = text.encode("utf-8") + b"\0"
    return data + b"\0" * (-len(data) % 4)


def encode_message(address: str, arguments: Sequence[str | int | float]) -> bytes:
    """One OSC message. ``bool`` is refused (OSC has T/F tags, but no tool here needs them)."""
    if not address.startswith("/"):
        raise ValueError(f"an OSC address starts with '/': {address!r}")
    tags, payload = ",", b""
    for value in arguments:
        if isinstance(value, bool):
            raise TypeError("bool is not sent as an OSC argument here")
        if isinstance(value, int):
            tags += "i"
            payload += struct.pack(">i", value)
        elif isinstance(value, float):
            tags += "f"
            payload += struct.pack(">f", value)
        elif isinstance(value, str):
            tags += "s"
            payload += _string(value)
        else:
            raise TypeError(f"cannot send {type(value).__name__} as an OSC argument")
    return _string(address) + _string(tags) + payload


def decode_message(data: bytes) -> tuple[str, list[str | int | float]]:
    """The inverse of :func:`encode_message` (for tests and for debugging a listener)."""

    def read_string(at: int) -> tuple[str, int]:
        end = data.index(b"\0", at)
        return data[at:end].decode("utf-8"), end + 1 + (-(end + 1) % 4)

    address, at = read_string(0)
    tags, at = read_string(at)
    values: list[str | int | float] = []
    for tag in tags[1:]:
        if tag == "i":
            values.append(struct.unpack(">i", data[at:at + 4])[0])
            at += 4
        elif tag == "f":
            values.append(struct.unpack(">f", data[at:at + 4])[0])
            at += 4
        elif tag == "s":
            text, at = read_string(at)
            values.append(text)
        else:
            raise ValueError(f"unsupported OSC type tag {tag!r}")
    return address, values


@dataclass(frozen=True)
class OscTarget:
    """Where a "clip ready" message goes: ``host:port`` over UDP."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, field: str = "--osc") -> OscTarget:
        host, sep, port_text = text.strip().rpartition(":")
        try:
            if not sep or not host:
                raise ValueError
            port = int(port_text)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise InputError(field, text, "must be HOST:PORT", "Example: 127.0.0.1:7000 (TouchDesigner's OSC In)") \
                from None
        return cls(host.strip("[]"), port)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def clip_ready_message(*, path: str, fps: float, frames: int, bpm: float | None, beats: int | None,
                       job: str) -> bytes:
    """The encoded "clip ready" message (see the module docstring for its arguments)."""
    return encode_message(CLIP_READY, [str(path), float(fps), int(frames), float(bpm or 0.0), int(beats or 0), job])


def send(message: bytes, targets: Sequence[OscTarget]) -> list[str]:
    """Send one datagram to each target; returns the errors (UDP is fire-and-forget, a dead target is no failure)."""
    errors = []
    for target in targets:
        try:
            family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, (target.host, target.port))
        except OSError as exc:
            errors.append(f"{target}: {exc}")
    return errors
