"""Frame interpolation: more frames between the rendered ones, for smoother motion or a higher frame rate.

Three methods, one signature (``frames, factor, loop → frames``):

* ``flow`` (default, weight-free) — dense optical flow both ways (OpenCV DIS, medium preset), forward-splatted to
  the in-between time so each pixel moves along its own motion vector, both neighbours warped there and blended by
  visibility. Follows the bidirectional splatting scheme of Niklaus & Liu, "Softmax Splatting for Video Frame
  Interpolation" (CVPR 2020), with a hard z-order (larger motion in front) instead of a learned one. Holds a moving
  object's shape where a crossfade ghosts it; motions much larger than the moving object (~20 px at 128 px frames)
  exceed what DIS tracks, and those frames fall back towards a blend.
* ``minterpolate`` — ffmpeg's motion-compensated ``minterpolate`` (``mi_mode=mci``, bidirectional motion estimation,
  overlapped-block compensation). ~1 output frame/s at 720p on 2 cores: an option, not the default.
* ``rife`` — RIFE, when the user supplies an export of it: TorchScript (``torch.jit.save``) or ``torch.export``
  (``.pt2``) of a module whose ``forward(img0, img1, timestep)`` takes ``(N, 3, H, W)`` float tensors in [0, 1] and
  a ``(N, 1, 1, 1)`` time and returns the frame at that time; frames are padded to multiples of 32. Raw
  ``flownet.pkl`` checkpoints need RIFE's own architecture code, which framefarm does not vendor.

Loop-aware: with ``loop=True`` the wrap pair (last → first) is interpolated too, so ``n`` frames become
``n × factor`` (and the first frame is not repeated at the end); otherwise ``(n - 1) × factor + 1``.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from framefarm.errors import InputError
from framefarm.video.ffmpeg import ffmpeg_error, ffmpeg_exe, reap

Method = Literal["flow", "minterpolate", "rife"]
METHODS: tuple[str, ...] = ("flow", "minterpolate", "rife")


@dataclass(frozen=True)
class InterpolateSpec:
    """``factor`` output frames per input frame (2: one new frame between each pair), by ``method``."""

    factor: int = 2
    method: Method = "flow"
    model: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.factor, int) or not 1 <= self.factor <= 16:
            raise InputError("interpolate", self.factor, "must be a whole factor from 1 to 16", "Example: 2")
        if self.method not in METHODS:
            raise InputError("interpolate method", self.method, "is not an interpolation method",
                             f"Use one of: {', '.join(METHODS)}")
        if self.method == "rife":
            if self.model is None:
                raise InputError("interpolate model", None, "RIFE needs its weights",
                                 "Give a TorchScript export of RIFE (--rife-model rife.pt), or use method flow")
            if not Path(self.model).is_file():
                raise InputError("interpolate model", str(self.model), "no such file",
                                 "Give the path of a TorchScript export of RIFE")


def interpolated_count(frames: int, factor: int, *, loop: bool) -> int:
    """Frames after interpolating ``frames`` by ``factor``: ``n·f`` for a loop, ``(n-1)·f + 1`` otherwise."""
    if factor <= 1:
        return frames
    return frames * factor if loop else (frames - 1) * factor + 1


# ---------------------------------------------------------------------------------------------------------------
# flow: DIS optical flow + bidirectional forward splatting


class FlowInterpolator:
    """Weight-free in-between frames from OpenCV's DIS optical flow (see the module docstring)."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        self._dis = cv2.DISOpticalFlow_create(preset)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Dense flow from ``a`` to ``b``: ``a[y, x]`` moves to ``(x, y) + flow[y, x]``."""
        gray_a = cv2.cvtColor(np.ascontiguousarray(a[..., :3]), cv2.COLOR_RGB2GRAY)
        gray_b = cv2.cvtColor(np.ascontiguousarray(b[..., :3]), cv2.COLOR_RGB2GRAY)
        return self._dis.calc(gray_a, gray_b, None)

    def _grid_for(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        if self._grid is None or self._grid[0].shape != (height, width):
            self._grid = tuple(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)))
        return self._grid

    def _splat_order(self, flow: np.ndarray) -> np.ndarray:
        # Source pixels by decreasing motion: where several land on one target, the fastest (the foreground, for
        # an object moving over a background) is the one kept.
        magnitude = (flow * flow).sum(axis=2).ravel()
        return np.argsort(-magnitude, kind="stable")

    def _splat(self, flow: np.ndarray, order: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Flow from time-``t`` pixels back to the source (``-t·F`` moved to ``x + t·F``) and which pixels got one."""
        height, width = flow.shape[:2]
        gx, gy = self._grid_for(height, width)
        tx = np.rint(gx + t * flow[..., 0]).astype(np.int64).ravel()[order]
        ty = np.rint(gy + t * flow[..., 1]).astype(np.int64).ravel()[order]
        inside = (tx >= 0) & (tx < width) & (ty >= 0) & (ty < height)
        target = (ty * width + tx)[inside]
        source = order[inside]
        target, first = np.unique(target, return_index=True)  # first occurrence = the largest motion
        back = np.zeros((height * width, 2), np.float32)
        back[target] = -t * flow.reshape(-1, 2)[source[first]]
        filled = np.zeros(height * width, bool)
        filled[target] = True
        return back.reshape(height, width, 2), filled.reshape(height, width)

    @staticmethod
    def _fill_holes(flow: np.ndarray, known: np.ndarray) -> np.ndarray:
        # Normalised convolution: average of the known flow around each hole, widening until every hole is filled.
        if known.all():
            return flow
        result = flow.copy()
        weight = known.astype(np.float32)
        for size in (3, 7, 15, 31, 63):
            total = cv2.blur(flow * weight[..., None], (size, size))
            count = cv2.blur(weight, (size, size))
            fill = (~known) & (count > 1e-6)
            result[fill] = total[fill] / count[fill][:, None]
            known = known | fill
            if known.all():
                break
        return result

    def _warp(self, image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        gx, gy = self._grid_for(*image.shape[:2])
        return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float32)

    def inbetweens(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        """Frames at each time in ``times`` (0 < t < 1) between ``a`` (t=0) and ``b`` (t=1)."""
        forward, backward = self.flow(a, b), self.flow(b, a)
        order_f, order_b = self._splat_order(forward), self._splat_order(backward)
        results = []
        for t in times:
            to_a, seen_a = self._splat(forward, order_f, t)          # time-t pixel → where it was in a
            to_b, seen_b = self._splat(backward, order_b, 1.0 - t)   # time-t pixel → where it will be in b
            # A pixel only one side saw takes the other side's motion, scaled (linear motion over the pair).
            to_a = np.where(seen_a[..., None], to_a, np.where(seen_b[..., None], to_b * (-t / (1 - t)), 0))
            to_b = np.where(seen_b[..., None], to_b, np.where(seen_a[..., None], to_a * (-(1 - t) / t), 0))
            known = seen_a | seen_b
            to_a, to_b = self._fill_holes(to_a, known), self._fill_holes(to_b, known)
            weight_a = (1 - t) * (seen_a | ~known) + 1e-4
            weight_b = t * (seen_b | ~known) + 1e-4
            mixed = (self._warp(a, to_a) * weight_a[..., None] + self._warp(b, to_b) * weight_b[..., None])
            mixed /= (weight_a + weight_b)[..., None]
            results.append(np.clip(mixed + 0.5, 0, 255).astype(np.uint8))
        return results


def _pairwise(frames: Iterable[np.ndarray], factor: int, loop: bool,
              inbetweens) -> Iterator[np.ndarray]:
    times = [k / factor for k in range(1, factor)]
    first = previous = None
    for frame in frames:
        if previous is None:
            first = frame
        else:
            yield from inbetweens(previous, frame, times)
        yield frame
        previous = frame
    if loop and previous is not None and first is not None:
        yield from inbetweens(previous, first, times)


def flow_interpolate(frames: Iterable[np.ndarray], factor: int, *, loop: bool = False) -> Iterator[np.ndarray]:
    """Interpolate with the weight-free optical-flow method; streams (holds two frames)."""
    if factor <= 1:
        yield from frames
        return
    yield from _pairwise(frames, factor, loop, FlowInterpolator().inbetweens)


# ---------------------------------------------------------------------------------------------------------------
# minterpolate: ffmpeg's motion-compensated interpolation, frames piped through and back


def minterpolate(frames: Iterable[np.ndarray], factor: int, *, loop: bool = False, fps: float = 25.0,
                 expected: int | None = None) -> Iterator[np.ndarray]:
    """Interpolate by piping the frames through ffmpeg's ``minterpolate`` filter (see the module docstring).

    For a loop the first two frames are appended, so the wrap pair is interpolated, and dropped again at the end
    (for other clips the last frame is appended twice). Exactly :func:`interpolated_count` frames come out.
    """
    if factor <= 1:
        yield from frames
        return
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        return
    height, width, channels = first.shape
    pix = "rgba" if channels == 4 else "rgb24"
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", pix, "-s", f"{width}x{height}", "-framerate", str(fps), "-i", "-",
               "-vf", f"minterpolate=fps={fps * factor}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1",
               "-f", "rawvideo", "-pix_fmt", pix, "-"]
    count = {"in": 0}
    failure: list[BaseException] = []

    def feed(process: subprocess.Popen) -> None:
        try:
            process.stdin.write(np.ascontiguousarray(first).tobytes())
            count["in"] += 1
            second = last = first
            for frame in iterator:
                process.stdin.write(np.ascontiguousarray(frame).tobytes())
                count["in"] += 1
                second = frame if count["in"] == 2 else second
                last = frame
            # minterpolate leaves out the output frames of its last input interval (N inputs give 2N-3 frames at
            # factor 2), so two more go in: the loop's continuation (first, second) or the last frame twice.
            for extra in ((first, second) if loop else (last, last)):
                process.stdin.write(np.ascontiguousarray(extra).tobytes())
        except BrokenPipeError:
            pass
        except BaseException as exc:  # handed to the reading thread
            failure.append(exc)
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass

    size = width * height * channels
    produced: list[np.ndarray] = []
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        writer = threading.Thread(target=feed, args=(process,), name="minterpolate-feed", daemon=True)
        try:
            writer.start()
            emitted = 0
            target = expected
            while True:
                data = process.stdout.read(size)
                if len(data) < size:
                    break
                frame = np.frombuffer(data, np.uint8).reshape(height, width, channels)
                # Hold one frame back: the count of inputs (and so of outputs) is only known at the end.
                produced.append(frame)
                if len(produced) > factor + 1:
                    yield produced.pop(0)
                    emitted += 1
            writer.join()
            code = process.wait()
            if failure:
                raise failure[0]
            if code != 0:
                stderr.seek(0)
                raise ffmpeg_error(f"ffmpeg minterpolate failed (exit {code})", command, stderr.read())
            target = interpolated_count(count["in"], factor, loop=loop) if target is None else target
            for frame in produced:
                if emitted >= target:
                    break
                yield frame
                emitted += 1
            while emitted < target:  # ffmpeg rounded the tail away: repeat the last frame it gave
                yield produced[-1] if produced else first
                emitted += 1
        finally:
            reap(process)
            writer.join(timeout=5)
            process.stdout.close()


# ---------------------------------------------------------------------------------------------------------------
# RIFE, from a user-supplied TorchScript export


class RifeInterpolator:
    """In-between frames from a TorchScript RIFE (see the module docstring), on the GPU when there is one."""

    def __init__(self, path: Path, device: str | None = None) -> None:
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            if Path(path).suffix == ".pt2":  # torch.export's ExportedProgram
                self.model = torch.export.load(str(path)).module().to(self.device)
            else:
                with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13, still the common export
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self.model = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as exc:  # torch raises RuntimeError/ValueError for files that are not TorchScript
            raise InputError("interpolate model", str(path), f"is not a TorchScript module ({exc})".splitlines()[0],
                             "Export RIFE with torch.jit.script/trace and torch.jit.save, or use method flow") from None

    def inbetweens(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        import torch

        height, width = a.shape[:2]
        pad_h, pad_w = (-height) % 32, (-width) % 32

        def tensor(image: np.ndarray) -> Any:
            padded = cv2.copyMakeBorder(np.ascontiguousarray(image[..., :3]), 0, pad_h, 0, pad_w,
                                        cv2.BORDER_REPLICATE)
            return torch.from_numpy(padded).to(self.device).permute(2, 0, 1)[None].float() / 255.0

        results = []
        with torch.inference_mode():
            img0, img1 = tensor(a), tensor(b)
            for t in times:
                step = torch.full((1, 1, 1, 1), float(t), device=self.device)
                out = self.model(img0, img1, step)[0, :, :height, :width]
                rgb = out.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
                if a.shape[2] == 4:  # alpha is blended, not warped
                    alpha = cv2.addWeighted(a[..., 3], 1 - t, b[..., 3], t, 0)
                    rgb = np.dstack([rgb, alpha])
                results.append(rgb)
        return results


def rife_interpolate(frames: Iterable[np.ndarray], factor: int, *, model: Path,
                     loop: bool = False) -> Iterator[np.ndarray]:
    """Interpolate with a user-supplied TorchScript RIFE; streams (holds two frames)."""
    if factor <= 1:
        yield from frames
        return
    yield from _pairwise(frames, factor, loop, RifeInterpolator(model).inbetweens)


def interpolate(frames: Iterable[np.ndarray], spec: InterpolateSpec, *, loop: bool = False, fps: float = 25.0,
                count: int | None = None) -> Iterator[np.ndarray]:
    """Interpolate ``frames`` as ``spec`` says (``count``: input frames, when known)."""
    if spec.method == "minterpolate":
        expected = interpolated_count(count, spec.factor, loop=loop) if count is not None else None
        return minterpolate(frames, spec.factor, loop=loop, fps=fps, expected=expected)
    if spec.method == "rife":
        return rife_interpolate(frames, spec.factor, model=Path(spec.model), loop=loop)
    return flow_interpolate(frames, spec.factor, loop=loop)
