"""Audio and tempo → a Deforum keyframe schedule: ``"0:(1.0), 15:(1.05), 19:(1.0121), …"``.

Three per-frame envelopes, each in 0 … 1, then mapped linearly onto a value range (``--map 1.0:1.05``) and written
as a schedule string that feeds straight into a job (``motion.zoom = "…"``, or ``--set motion.zoom=…``):

* **loudness** — the RMS level of the samples each frame shows, in dB over a ``range_db`` window below the loudest
  frame (a perceptual scale: a quiet passage is not flattened to zero the way linear RMS flattens it);
* **onset** — spectral flux (the summed rise of log-magnitude spectra between short overlapping windows, half-wave
  rectified; Bello et al., "A Tutorial on Onset Detection in Music Signals", IEEE TSALP 2005, §III-C), the largest
  value inside each frame: drum hits and note starts, not sustained level;
* **beat pulses** — ``bpm`` (and ``offset``) put a beat on the nearest frame to each beat time; each beat starts a
  pulse at 1 that decays exponentially (``decay`` beats to 1/e), optionally scaled by the sound's level at the beat
  (an accented pulse train locked to the tempo, not to detection).

Timing convention: frame ``i`` is on screen from ``i / fps`` to ``(i + 1) / fps`` seconds, so it shows the sound in
that span: a hit at 0.5 s at 30 fps peaks on frame 15. ``offset`` is where the track starts in the video, as the job's
``output.audio_offset``: pass the same value and the schedule stays in sync with the muxed sound.

Envelope followers smooth the result the way a VJ mixer's audio-reactive input does: an instant (or ``attack``-long)
rise and a ``release``-long exponential fall, so a peak stays on the frame of the hit.

Pure numpy: decoding a file to samples is :func:`framefarm.video.audio_decode.decode_pcm`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from framefarm.errors import InputError

__all__ = [
    "Feature",
    "beat_frames",
    "beat_pulses",
    "beats_to_frames",
    "envelope",
    "follow",
    "frame_loudness",
    "frame_onsets",
    "make_schedule",
    "map_range",
    "parse_map",
    "schedule_string",
]

Feature = Literal["loudness", "onset", "rms"]
FEATURES: tuple[str, ...] = ("loudness", "onset", "rms")

# Spectral flux analysis, sizes in samples at ONSET_RATE (the same durations at any rate): 1024-sample Hann windows
# (46 ms: enough frequency resolution to tell a kick from a hat) every 128 samples (5.8 ms: a sixth of a frame at
# 30 fps, so a hit is placed within its frame).
ONSET_RATE = 22050
ONSET_WINDOW = 1024
ONSET_HOP = 128
ONSET_LAG = ONSET_WINDOW // 4 + ONSET_HOP  # samples from a window's centre to the hit its flux peak reports
# log(1 + C·|X|) compression before differencing (Bello et al.; Klapuri 1999): soft hits count, loud ones don't swamp.
ONSET_COMPRESSION = 100.0
# Moving-median window (seconds) for the onset feature's adaptive threshold.
ONSET_MEDIAN_SECONDS = 0.5
# Silence floor for the loudness feature: −120 dBFS is far below any real recording's noise.
SILENCE_DB = -120.0


# ----- per-frame features -------------------------------------------------------------------------------------------


def _frame_bounds(frames: int, fps: float, rate: int, offset: float) -> np.ndarray:
    """Sample index where each frame's span starts (``frames + 1`` bounds), in the track's own time."""
    times = np.arange(frames + 1, dtype=np.float64) / fps - offset
    return np.round(times * rate).astype(np.int64)


def frame_loudness(samples: np.ndarray, rate: int, *, fps: float, frames: int, offset: float = 0.0) -> np.ndarray:
    """RMS level of the samples each frame shows (linear, 0 where the frame shows no sound).

    Args:
        samples (`np.ndarray`): mono samples in −1 … 1.
        rate (`int`): their sample rate.
        fps (`float`): frames per second of the video.
        frames (`int`): frames to compute.
        offset (`float`, *optional*, defaults to 0): seconds into the video where the track starts.
    """
    samples = np.asarray(samples, dtype=np.float64)
    bounds = np.clip(_frame_bounds(frames, fps, rate, offset), 0, len(samples))
    energy = np.concatenate([[0.0], np.cumsum(samples * samples)])
    counts = np.diff(bounds)
    sums = energy[bounds[1:]] - energy[bounds[:-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.maximum(sums, 0.0) / counts)
    return np.where(counts > 0, rms, 0.0)


def _sizes(rate: int) -> tuple[int, int, int]:
    """Window, hop and lag in samples at ``rate`` (the constants are for 22.05 kHz; same durations at any rate)."""
    scale = rate / ONSET_RATE
    return max(64, round(ONSET_WINDOW * scale)), max(16, round(ONSET_HOP * scale)), round(ONSET_LAG * scale)


def _log_spectra(padded: np.ndarray, first: int, count: int, window: np.ndarray, hop: int) -> np.ndarray:
    starts = (first + np.arange(count)) * hop
    frames = padded[starts[:, None] + np.arange(window.size)[None, :]] * window
    return np.log1p(ONSET_COMPRESSION * np.abs(np.fft.rfft(frames, axis=1)))


def _onset_function(samples: np.ndarray, rate: int = 22050) -> np.ndarray:
    """Spectral flux per hop; value ``j`` belongs to the window centred on sample ``j * hop``.

    Before the track there is no silence to rise from (a track that opens with hiss or a pad must not "start" with
    an onset): the first half window is the track mirrored, and the first window is compared with the median
    spectrum of the track's first second. A hit right at the start still stands out against that median.
    """
    samples = np.asarray(samples, np.float64)
    size, hop, _lag = _sizes(rate)
    half = size // 2
    lead = samples[half:0:-1] if samples.size > half else np.zeros(half)
    padded = np.concatenate([lead, samples, np.zeros(half)])
    count = max(0, (len(padded) - size) // hop + 1)
    flux = np.zeros(count)
    if count == 0:
        return flux
    window = np.hanning(size)
    opening = min(count, max(1, rate // hop))  # the first second
    previous = np.median(_log_spectra(padded, 0, opening, window, hop), axis=0)
    block = 2048  # windows per FFT batch: bounded memory for long tracks
    for first in range(0, count, block):
        n = min(block, count - first)
        spectra = _log_spectra(padded, first, n, window, hop)
        stacked = np.vstack([previous[None, :], spectra])
        flux[first:first + n] = np.maximum(np.diff(stacked, axis=0), 0.0).sum(axis=1)
        previous = spectra[-1]
    return flux


def frame_onsets(samples: np.ndarray, rate: int, *, fps: float, frames: int, offset: float = 0.0) -> np.ndarray:
    """The strongest onset (spectral flux) inside each frame's span; 0 where the frame shows no sound."""
    flux = _onset_function(samples, rate)
    _size, hop, lag = _sizes(rate)
    out = np.zeros(frames)
    if flux.size == 0:
        return out
    # Flux rises most as a hit enters the leading half of the window, so its largest value comes before the hit:
    # measured, 270–370 samples before it at these window and hop sizes. ONSET_LAG moves each value to the upper
    # end of that range: a hit is never placed in a frame before it is heard (at worst 5 ms late).
    times = (np.arange(flux.size) * hop + lag) / rate + offset  # video time of each value
    index = np.floor(times * fps + 1e-9).astype(np.int64)
    inside = (index >= 0) & (index < frames)
    np.maximum.at(out, index[inside], flux[inside])
    return out


def _above_local_median(values: np.ndarray, *, width: int) -> np.ndarray:
    """What rises above the moving median of ``width`` frames (Bello et al. 2005, §IV-B's adaptive threshold):
    the steady flux of noise, hiss and sustained sound is removed, onsets stay."""
    if values.size < 3:
        return values.copy()
    half = width // 2
    padded = np.pad(values, half, mode="reflect")  # "edge" would repeat a hit at frame 0 and hide it
    medians = np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)
    return np.maximum(values - medians, 0.0)


def _robust_unit(values: np.ndarray, *, per: int) -> np.ndarray:
    """Scale so a typical strong value is 1: the median of the ``per`` largest values (one per second of video),
    clipped. One freak value (the track's first window, a click of the needle) then cannot flatten all the rest."""
    if values.size == 0 or values.max() <= 0:
        return np.zeros_like(values)
    top = np.sort(values)[-min(per, values.size):]
    reference = float(np.median(top[top > 0])) if (top > 0).any() else float(values.max())
    return np.clip(values / reference, 0.0, 1.0)


def follow(values: np.ndarray, *, fps: float, attack: float = 0.0, release: float = 0.15) -> np.ndarray:
    """Envelope follower: rise with time constant ``attack`` seconds, fall with ``release`` seconds (0 = instant).

    One-pole smoothing per direction (the classic analogue envelope follower; Zölzer, *DAFX*, 2nd ed., §4.2.1):
    ``y[i] = y[i-1] + k·(x[i] − y[i-1])`` with ``k = 1 − exp(−1 / (τ · fps))``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or (attack <= 0 and release <= 0):
        return values.copy()

    def coefficient(tau: float) -> float:
        return 1.0 if tau <= 0 else 1.0 - math.exp(-1.0 / (tau * fps))

    up, down = coefficient(attack), coefficient(release)
    out = np.empty_like(values)
    level = values[0] if attack <= 0 else 0.0
    for i, x in enumerate(values.tolist()):
        level += (up if x > level else down) * (x - level)
        out[i] = level
    return out


def envelope(samples: np.ndarray, rate: int, *, fps: float, frames: int, feature: Feature = "loudness",
             offset: float = 0.0, range_db: float = 48.0, attack: float = 0.0, release: float = 0.15) -> np.ndarray:
    """A 0 … 1 per-frame envelope of the sound (see the module docstring for the features).

    Args:
        samples, rate: mono samples and their rate.
        fps, frames: the video's frame rate and length.
        feature (`"loudness" | "onset" | "rms"`, *optional*, defaults to ``"loudness"``): what is measured.
        offset (`float`, *optional*, defaults to 0): seconds into the video where the track starts.
        range_db (`float`, *optional*, defaults to 48): loudness only: the level range mapped onto 0 … 1, in dB
            below the loudest frame.
        attack, release (`float`, *optional*, defaults to 0 and 0.15): envelope follower times in seconds.

    Returns:
        float64 array of ``frames`` values in 0 … 1; all zeros for silence.
    """
    if feature not in FEATURES:
        raise InputError("--feature", feature, "is not an audio feature", f"Use one of: {', '.join(FEATURES)}")
    if frames < 1:
        raise InputError("frames", frames, "must be at least 1")
    if not fps > 0:
        raise InputError("--fps", fps, "must be > 0", "Example: --fps 30")
    if feature == "onset":
        raw = _robust_unit(_above_local_median(frame_onsets(samples, rate, fps=fps, frames=frames, offset=offset),
                                               width=max(3, int(round(ONSET_MEDIAN_SECONDS * fps)) | 1)),
                           per=max(1, int(round(frames / fps))))
    else:
        raw = frame_loudness(samples, rate, fps=fps, frames=frames, offset=offset)
        if feature == "loudness":
            if range_db <= 0:
                raise InputError("--range-db", range_db, "must be > 0", "Example: --range-db 48")
            with np.errstate(divide="ignore"):
                db = np.where(raw > 0, 20.0 * np.log10(np.maximum(raw, 1e-30)), SILENCE_DB)
            top = db.max()
            raw = np.clip((db - (top - range_db)) / range_db, 0.0, 1.0) if top > SILENCE_DB else np.zeros(frames)
    peak = raw.max() if raw.size else 0.0
    if peak <= 0:
        return np.zeros(frames)
    return np.clip(follow(raw / peak, fps=fps, attack=attack, release=release), 0.0, 1.0)


# ----- tempo ---------------------------------------------------------------------------------------------------------


def beats_to_frames(bpm: float, beats: int, fps: float) -> int:
    """Frames in ``beats`` beats at ``bpm`` and ``fps``; refused unless whole (a loop of 187.5 frames can't exist)."""
    if not bpm > 0:
        raise InputError("--bpm", bpm, "must be > 0", "Example: --bpm 128")
    if beats < 1:
        raise InputError("--beats", beats, "must be at least 1", "Example: --beats 16")
    exact = beats * 60.0 * fps / bpm
    if abs(exact - round(exact)) > 1e-6:
        per_beat = 60.0 * fps / bpm
        whole = next((b for b in range(1, 10_001) if abs(b * per_beat - round(b * per_beat)) <= 1e-6), None)
        fix = (f"Use a multiple of {whole} beats (e.g. --beats {whole * max(1, round(beats / whole))}), "
               "or give --frames" if whole else "Give --frames instead")
        raise InputError("--beats", beats, f"is {exact:g} frames at {bpm:g} BPM and {fps:g} fps, not a whole number",
                         fix)
    return int(round(exact))


def beat_frames(frames: int, *, fps: float, bpm: float, offset: float = 0.0) -> np.ndarray:
    """The frame on screen at each beat time ``offset + k·60/bpm`` (``floor(t·fps)``, the module's timing
    convention, so pulses land on the frames where the sound's own peaks are), inside ``0 … frames-1``."""
    if not bpm > 0:
        raise InputError("--bpm", bpm, "must be > 0", "Example: --bpm 128")
    period = 60.0 / bpm
    first = math.ceil(-offset / period - 1e-9)  # earliest beat at or after video time 0
    last = math.floor((frames / fps - offset) / period)
    k = np.arange(first, last + 1, dtype=np.float64)
    # The epsilon keeps a beat that falls exactly on a frame's start (0.5 s at 30 fps) on that frame.
    found = np.floor((offset + k * period) * fps + 1e-6).astype(np.int64)
    return np.unique(found[(found >= 0) & (found < frames)])


def beat_pulses(frames: int, *, fps: float, bpm: float, offset: float = 0.0, decay: float = 0.25,
                accents: np.ndarray | None = None) -> np.ndarray:
    """A pulse train locked to the tempo: 1 on each beat frame, falling as ``exp(−beats_since / decay)``.

    Args:
        frames, fps: length and frame rate of the video.
        bpm (`float`): tempo; beats fall at ``offset + k · 60 / bpm`` seconds (on the nearest frame).
        offset (`float`, *optional*, defaults to 0): seconds to the first beat.
        decay (`float`, *optional*, defaults to 0.25): beats for a pulse to fall to 1/e (≤ 0: one frame spikes).
        accents (`np.ndarray`, *optional*): a 0 … 1 per-frame envelope; each pulse's height becomes the envelope's
            peak within a tenth of a beat of it (so pulses follow the music's dynamics but stay on the grid).

    Returns:
        float64 array of ``frames`` values in 0 … 1 (0 before the first beat).
    """
    hits = beat_frames(frames, fps=fps, bpm=bpm, offset=offset)
    out = np.zeros(frames)
    if hits.size == 0:
        return out
    heights = np.ones(hits.size)
    per_beat = 60.0 * fps / bpm
    if accents is not None:
        accents = np.asarray(accents, np.float64)
        reach = max(1, int(round(per_beat / 10)))
        heights = np.array([accents[max(0, h - reach):h + reach + 1].max(initial=0.0) for h in hits.tolist()])
    i = np.arange(frames)
    owner = np.searchsorted(hits, i, side="right") - 1
    has = owner >= 0
    since = (i[has] - hits[owner[has]]) / per_beat  # in beats
    shape = np.exp(-since / decay) if decay > 0 else (since == 0).astype(np.float64)
    out[has] = heights[owner[has]] * shape
    return out


# ----- mapping and writing -------------------------------------------------------------------------------------------


def parse_map(text: str, *, field: str = "--map") -> tuple[float, float]:
    """``"1.0:1.05"`` → ``(1.0, 1.05)``: the values for envelope 0 and envelope 1 (``"5:-5"`` inverts)."""
    low_text, sep, high_text = str(text).strip().partition(":")
    try:
        if not sep:
            raise ValueError
        low, high = float(low_text), float(high_text)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError
    except ValueError:
        raise InputError(field, text, "must be LOW:HIGH, two numbers", 'Example: --map "1.0:1.05"') from None
    return low, high


def map_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``low + (high − low) · values``: envelope 0 → ``low``, 1 → ``high``."""
    return low + (high - low) * np.asarray(values, dtype=np.float64)


def _number(value: float, precision: int) -> str:
    # A Deforum *plain number* (no exponent, no trailing dot): it sets its own frame and the frames between keys
    # are interpolated. "1e-05" would be an expression, held until the next key (keyframes.py).
    text = f"{value:.{precision}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _simplify(values: np.ndarray, tolerance: float) -> np.ndarray:
    """Keys to keep so that linear interpolation between them stays within ``tolerance`` of every value.

    Ramer–Douglas–Peucker (Douglas & Peucker, *Cartographica* 10(2), 1973) on the frame axis, with the vertical
    error (what a schedule reader sees) instead of the perpendicular distance. Ends, local peaks and troughs that
    stand out by more than ``tolerance`` are always kept.
    """
    n = values.size
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        x = np.arange(a + 1, b)
        line = values[a] + (values[b] - values[a]) * (x - a) / (b - a)
        error = np.abs(values[a + 1:b] - line)
        k = int(np.argmax(error))
        if error[k] > tolerance:
            split = a + 1 + k
            keep[split] = True
            stack.append((a, split))
            stack.append((split, b))
    return np.flatnonzero(keep)


def schedule_string(values: Sequence[float] | np.ndarray, *, precision: int = 4, tolerance: float | None = None,
                    every_frame: bool = False) -> str:
    """Write per-frame values as a Deforum schedule: ``"0:(1), 15:(1.05), 16:(1.0391), …"``.

    Args:
        values: one value per frame.
        precision (`int`, *optional*, defaults to 4): decimals written.
        tolerance (`float`, *optional*): keys whose value linear interpolation between their neighbours reproduces
            within this are left out; defaults to half the last written decimal, which loses nothing that was going
            to be written anyway (the job's ``motion.interpolation`` must be ``linear``, the default).
        every_frame (`bool`, *optional*, defaults to False): one key per frame (exact under any interpolation).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise InputError("values", f"{values.size} value(s)", "need one value per frame, at least one")
    if not np.all(np.isfinite(values)):
        raise InputError("values", "non-finite", "every value must be a finite number")
    if not 0 <= precision <= 12:
        raise InputError("--precision", precision, "must be 0 … 12 decimals", "Example: --precision 4")
    rounded = np.round(values, precision)
    if every_frame:
        keys = np.arange(values.size)
    else:
        limit = 0.5 * 10.0 ** -precision if tolerance is None else float(tolerance)
        keys = _simplify(rounded, limit)
    return ", ".join(f"{k}:({_number(float(rounded[k]), precision)})" for k in keys.tolist())


@dataclass(frozen=True)
class AudioSchedule:
    """A schedule made from sound or tempo, with what it was made from."""

    schedule: str
    values: np.ndarray
    frames: int
    fps: float
    low: float
    high: float
    beats: tuple[int, ...] = ()


def make_schedule(*, fps: float, frames: int, value_range: tuple[float, float], samples: np.ndarray | None = None,
                  rate: int | None = None, feature: Feature = "loudness", bpm: float | None = None,
                  offset: float = 0.0, first_beat: float = 0.0, decay: float = 0.25, range_db: float = 48.0,
                  attack: float = 0.0, release: float = 0.15, precision: int = 4, tolerance: float | None = None,
                  every_frame: bool = False) -> AudioSchedule:
    """Sound and/or tempo → :class:`AudioSchedule` (what ``framefarm schedule-from-audio`` prints).

    With ``samples`` only: the sound's envelope. With ``bpm`` only: beat-locked pulses. With both: beat-locked
    pulses whose heights follow the sound's envelope at each beat. ``offset`` is where the track starts in the
    video (as ``output.audio_offset``); ``first_beat`` is the first beat's time in the track, so beats fall at
    ``offset + first_beat + k · 60 / bpm`` seconds of video.
    """
    if samples is None and bpm is None:
        raise InputError("track", problem="is needed unless --bpm is given",
                         fix="Give a sound file, or --bpm 128 --beats 16 for pulses on the beat")
    level = None
    if samples is not None:
        if rate is None:
            raise InputError("rate", problem="is needed with samples")
        level = envelope(samples, rate, fps=fps, frames=frames, feature=feature, offset=offset, range_db=range_db,
                         attack=attack, release=0.0 if bpm is not None else release)
    if bpm is not None:
        phase = offset + first_beat
        shape = beat_pulses(frames, fps=fps, bpm=bpm, offset=phase, decay=decay, accents=level)
        hits = tuple(int(h) for h in beat_frames(frames, fps=fps, bpm=bpm, offset=phase))
    else:
        shape, hits = level, ()
    low, high = value_range
    values = map_range(shape, low, high)
    text = schedule_string(values, precision=precision, tolerance=tolerance, every_frame=every_frame)
    return AudioSchedule(schedule=text, values=values, frames=frames, fps=fps, low=low, high=high, beats=hits)
