"""Where a profiled GPU batch leaves the GPU idle, and what the host was doing meanwhile.

torch.profiler's kernel table says how long kernels ran, not why the GPU waited between them. Here the device spans
of a profile (kernels, copies, memsets) are merged into busy intervals; each gap between two of them is attributed
(1) to the host operation that launched the work ending the gap (the op that was late) and (2) to the innermost host
operation covering most of the gap (what the host was busy with: a sync, a copy from pageable memory, Python between two
launches). Both carry the innermost phase label around them (``ff:<function>``, put there by the benchmark with
``torch.profiler.record_function``), so a gap reads as "pipeline's set_timesteps: aten::item".

The attribution is pure arithmetic on spans (:func:`idle_gaps`), tested on the CPU; :func:`spans_from_profile`
reads them from a finished ``torch.profiler.profile``.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

PHASE_PREFIX = "ff:"


@dataclass(frozen=True)
class Span:
    """An interval in microseconds on the profile's clock, with what it was."""

    start: float
    end: float
    label: str


def busy_intervals(device: list[Span]) -> list[tuple[float, float, str]]:
    """The union of device spans as (start, end, label of the span that opened the interval), by start."""
    merged: list[list] = []
    for span in sorted(device, key=lambda s: s.start):
        if merged and span.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], span.end)
        else:
            merged.append([span.start, span.end, span.label])
    return [tuple(m) for m in merged]


def idle_gaps(device: list[Span], host: list[Span], *, min_gap_us: float = 50.0, top: int = 15) -> dict:
    """Idle time between the first and the last device span, by the launch that ended each gap and by the innermost
    host span covering at least half of it. Gaps under ``min_gap_us`` count in the total only: between back-to-back
    kernels the GPU always idles a few microseconds."""
    busy = busy_intervals(device)
    if not busy:
        return {"idle_s": 0.0, "gaps": 0, "by_late_launch_s": {}, "by_host_op_s": {}, "largest": []}
    window = busy[-1][1] - busy[0][0]
    # Only host spans long enough to cover much of a counted gap can win it; sorting by start lets each gap look at
    # the spans that began before it ended.
    candidates = sorted((h for h in host if h.end - h.start >= min_gap_us / 2), key=lambda h: h.start)
    starts = [h.start for h in candidates]
    idle_total = 0.0
    by_launch: dict[str, float] = {}
    by_host: dict[str, float] = {}
    largest: list[tuple[float, str, str]] = []
    for (_, gap_start, _), (gap_end, _, late) in zip(busy, busy[1:]):
        gap = gap_end - gap_start
        idle_total += gap
        if gap < min_gap_us:
            continue
        # The innermost (shortest) span covering at least half the gap: a sync inside ``aten::item`` inside a
        # phase label is named as the sync. Failing that, the gap was Python between profiled ops.
        covering = [(h.end - h.start, h.label) for h in candidates[:bisect_left(starts, gap_end)]
                    if min(h.end, gap_end) - max(h.start, gap_start) >= gap / 2]
        best = min(covering)[1] if covering else "python / no profiled op"
        by_launch[late] = by_launch.get(late, 0.0) + gap
        by_host[best] = by_host.get(best, 0.0) + gap
        largest.append((gap, late, best))
    largest.sort(reverse=True)

    def ranked(totals: dict[str, float]) -> dict[str, float]:
        return {k: round(v / 1e6, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:top]}

    return {"window_s": round(window / 1e6, 4), "idle_s": round(idle_total / 1e6, 6),
            "idle_fraction": round(idle_total / window, 4) if window else None,
            "gaps": sum(1 for _ in largest), "min_gap_ms": min_gap_us / 1e3,
            "counted_idle_s": round(sum(g for g, _, _ in largest) / 1e6, 4),
            "by_late_launch_s": ranked(by_launch), "by_host_op_s": ranked(by_host),
            "largest": [[round(g / 1e3, 3), late, during] for g, late, during in largest[:top]]}


def phase_of(event) -> str:
    """The innermost ``ff:`` label around a profiler event (itself included), or ``-``."""
    while event is not None:
        if event.name.startswith(PHASE_PREFIX):
            return event.name[len(PHASE_PREFIX):]
        event = event.cpu_parent
    return "-"


def spans_from_profile(prof) -> tuple[list[Span], list[Span]]:
    """(device spans labelled with the host op that launched them, host spans) of a finished profile."""
    from torch.autograd import DeviceType

    return spans_from_events(list(prof.events()), cpu=DeviceType.CPU, gpu=DeviceType.CUDA)


def spans_from_events(events: list, *, cpu, gpu) -> tuple[list[Span], list[Span]]:
    """:func:`spans_from_profile` on profiler ``FunctionEvent``\\s. A device event is linked to the op that launched
    it through ``linked_correlation_id`` where torch records it (2.12 and later), else through the runtime call
    (``cudaLaunchKernel``, ``cudaMemcpyAsync``…) that shares its CUPTI correlation id and sits inside the op. A
    ``record_function`` range is also mirrored on the GPU as a user annotation: not work, left out."""
    by_link = {e.id: e for e in events
               if e.device_type == cpu and getattr(e, "linked_correlation_id", None) == 0}
    runtime = {e.id: e for e in events if e.device_type == cpu and e.name.startswith("cu")}
    device, host = [], []
    for e in events:
        start, end = e.time_range.start, e.time_range.end
        if e.device_type == gpu:
            if is_annotation(e):
                continue
            link = getattr(e, "linked_correlation_id", None)
            call = runtime.get(e.id)
            op = by_link.get(link) if link else (call.cpu_parent or call) if call is not None else None
            label = f"{phase_of(op)}: {op.name}" if op is not None else f"-: {e.name[:60]}"
            device.append(Span(start, end, label))
        elif e.device_type == cpu:
            # A phase label itself covering a gap means Python of that phase, between profiled ops.
            name = "python" if e.name.startswith(PHASE_PREFIX) else e.name[:80]
            host.append(Span(start, end, f"{phase_of(e)}: {name}"))
    return device, host


def is_annotation(event) -> bool:
    """A ``record_function`` range as the profiler mirrors it on the device (no kernel: not GPU work)."""
    name = getattr(event, "name", None) or getattr(event, "key", "")  # an event, or key_averages' row
    return bool(getattr(event, "is_user_annotation", False)) or name.startswith(PHASE_PREFIX)
