"""The GPU profile's idle-gap attribution (benchmarks/gpu/idle_gaps.py) on hand-made spans: which launch came late
and what the host did meanwhile; and the labels it reads from a real torch.profiler run on the CPU."""

from __future__ import annotations

import pytest

from benchmarks.gpu import idle_gaps as gaps

Span = gaps.Span


def test_gaps_go_to_the_late_launch_and_to_the_innermost_host_op_covering_them():
    device = [
        Span(0, 1000, "pipe: aten::conv"), Span(900, 2000, "pipe: aten::mm"),  # overlapping streams: one interval
        Span(2010, 3000, "pipe: aten::add"),  # a 10 µs launch gap: in the total, not attributed
        Span(5000, 6000, "set_timesteps: aten::copy_"),  # 2 ms idle: the host synced in set_timesteps
        Span(6500, 7000, "decode: aten::conv"),  # 0.5 ms idle with no op on the host: Python
    ]
    host = [
        Span(0, 9000, "pipe: python"),  # the phase label covers everything: the innermost op must win
        Span(2900, 5000, "set_timesteps: aten::item"),
        Span(3100, 4900, "set_timesteps: cudaStreamSynchronize"),  # inside aten::item: the innermost names the gap
        Span(6000, 6100, "decode: aten::empty"),  # too small a part of its gap to explain it
    ]
    report = gaps.idle_gaps(device, host, min_gap_us=50, top=5)
    assert report["window_s"] == pytest.approx(0.007)
    assert report["idle_s"] == pytest.approx((10 + 2000 + 500) / 1e6)
    assert report["gaps"] == 2 and report["counted_idle_s"] == pytest.approx(0.0025)
    assert report["by_late_launch_s"] == {"set_timesteps: aten::copy_": 0.002, "decode: aten::conv": 0.0005}
    assert report["by_host_op_s"] == {"set_timesteps: cudaStreamSynchronize": 0.002, "pipe: python": 0.0005}
    assert report["largest"][0] == [2.0, "set_timesteps: aten::copy_", "set_timesteps: cudaStreamSynchronize"]


def test_a_gap_no_host_span_mostly_covers_is_python_between_ops():
    device = [Span(0, 100, "a: k"), Span(1100, 1200, "b: k")]
    host = [Span(150, 300, "a: aten::empty")]  # 150 µs of a 1 ms gap
    report = gaps.idle_gaps(device, host)
    assert list(report["by_host_op_s"]) == ["python / no profiled op"]
    assert gaps.idle_gaps([], host)["idle_s"] == 0.0


def test_phase_labels_come_from_record_function_around_the_op():
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function(gaps.PHASE_PREFIX + "outer"):
            with record_function(gaps.PHASE_PREFIX + "inner"):
                torch.ones(64, 64).sum()
            torch.zeros(8).add_(1)
    device, host = gaps.spans_from_profile(prof)
    assert device == []  # no GPU here
    labels = {span.label for span in host}
    assert "inner: aten::sum" in labels and "outer: aten::add_" in labels
    assert "inner: python" in labels and "outer: python" in labels


def _event(id_, name, device, start, end, parent=None, **extra):
    from types import SimpleNamespace

    return SimpleNamespace(id=id_, name=name, device_type=device, time_range=SimpleNamespace(start=start, end=end),
                           cpu_parent=parent, **extra)


def test_kernels_link_to_their_op_through_the_runtime_call_when_torch_records_no_link():
    """torch 2.11 (the GPU host's) has no ``linked_correlation_id``: a kernel shares its CUPTI correlation id with
    the ``cudaLaunchKernel`` inside the op. The phase label's range mirrored on the GPU is no work and is left out."""
    phase = _event(1, "ff:step", "cpu", 0, 5000)
    op = _event(2, "aten::add", "cpu", 10, 60, parent=phase)
    launch = _event(900, "cudaLaunchKernel", "cpu", 20, 40, parent=op)
    sync = _event(3, "cudaStreamSynchronize", "cpu", 100, 3000, parent=phase)
    events = [phase, op, launch, sync,
              _event(1, "ff:step", "gpu", 0, 5000, is_user_annotation=True),
              _event(900, "elementwise_kernel", "gpu", 50, 100),
              _event(901, "unlinked_kernel", "gpu", 3100, 3200)]
    device, host = gaps.spans_from_events(events, cpu="cpu", gpu="gpu")
    assert device == [Span(50, 100, "step: aten::add"), Span(3100, 3200, "-: unlinked_kernel")]
    assert Span(100, 3000, "step: cudaStreamSynchronize") in host and Span(0, 5000, "step: python") in host
    report = gaps.idle_gaps(device, host)
    assert report["by_host_op_s"] == {"step: cudaStreamSynchronize": 0.003}
