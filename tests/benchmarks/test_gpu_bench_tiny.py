"""The GPU benchmark's script smoke-runs on a CPU at toy size (``--tiny``), so a device run never fails on an
import or a typo: real tiny models, framefarm's renderer, the baseline pipeline, the FLOP counter, the JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "bench_gpu.py"


def load_bench(tmp_path, monkeypatch):
    """The benchmark script as a module, with its caches in ``tmp_path`` and a worker's default levers."""
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_gpu", bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    monkeypatch.setenv("FRAMEFARM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FRAMEFARM_ACCEL", raising=False)
    return bench


def test_tiny_video2video_run_writes_a_complete_record(tmp_path, monkeypatch):
    bench = load_bench(tmp_path, monkeypatch)
    assert bench.main(["--tiny", "--jobs", "video2video", "--out", str(tmp_path), "--name", "smoke",
                       "--warm-start", "--compare-host-copies"]) == 0
    document = json.loads((tmp_path / "smoke.json").read_text())
    assert document["matmul_ceiling_tflops"] > 0 and document["versions"]["diffusers"]
    (record,) = document["records"]
    assert record["job"] == "video2video" and "error" not in record
    for key in ("frames_per_s", "baseline_frames_per_s", "speedup_vs_baseline", "achieved_tflops",
                "fraction_of_ceiling", "gflop_per_frame"):
        assert record[key] > 0, key
    assert "peak_mem_gib" in record  # None on a CPU
    assert record["default_levers"] is True
    # A second process rendered a batch from the same models folder and caches (compilation is GPU-only).
    assert record["warm_start"]["first_batch_s"] > 0 and record["warm_start_s"] >= 0  # no --compile: the levers a worker gets by default
    assert record["baseline_batched"]["frames_per_s"] > 0 and record["speedup_vs_baseline_batched"] > 0
    assert record["frames"] == bench.TINY.v2v_frames
    # Chunked as the planner chunks such a job (whole batches), as a farm's render processes take them.
    assert record["chunk_size"] % bench.TINY.v2v_batch == 0 and record["chunk_size"] >= bench.TINY.v2v_batch
    assert record["unet_attention"] == {"FusedAttnProcessor2_0": 20}  # the default levers reached the UNet
    # The same job again with host copies flipped from their default (on): same pixels (on a CPU no copy is pinned).
    from framefarm.renderers import host_copies

    flipped = record["host_copies_flipped"]
    assert host_copies.ENABLED is True  # put back after the flipped run
    assert flipped["host_copies"] is False and flipped["max_pixel_diff"] == 0 and flipped["frames_per_s"] > 0


def test_tiny_deforum_lockstep_run_renders_every_chain(tmp_path, monkeypatch):
    bench = load_bench(tmp_path, monkeypatch)
    assert bench.main(["--tiny", "--jobs", "deforum_lockstep", "--out", str(tmp_path), "--name", "smoke"]) == 0
    (record,) = json.loads((tmp_path / "smoke.json").read_text())["records"]
    assert record["job"] == "deforum_lockstep" and "error" not in record
    assert record["chains"] == 3 and record["frames"] == 3 * bench.TINY.chain_job_frames
    assert record["frames_per_s"] > 0 and record["speedup_vs_baseline"] > 0 and record["default_levers"] is True


def test_the_speed_table_is_built_from_the_records():
    spec = importlib.util.spec_from_file_location("speed_table", SCRIPT.parent / "speed_table.py")
    speed_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed_table)
    document = {"records": [
        {"job": "video2video", "batch_size": 32, "frames_per_s": 10.5, "baseline_frames_per_s": 1.5,
         "speedup_vs_baseline": 7.0, "baseline_batched": {"batch_size": 8, "frames_per_s": 4.2},
         "speedup_vs_baseline_batched": 2.5, "fraction_of_ceiling": 0.451, "default_levers": True,
         "compiled": "blocks:default"},
        {"job": "animatediff", "error": "RuntimeError: boom"},
        {"job": "deforum_lockstep", "chains": 16, "lockstep_groups": [8, 8], "batch_size": 8, "frames_per_s": 11.24,
         "baseline_frames_per_s": 2.19, "speedup_vs_baseline": 5.13, "fraction_of_ceiling": 0.3677,
         "default_levers": True, "compiled": "model:reduce-overhead", "run": "call20", "device": "H100"},
    ]}
    lines = speed_table.table(document).splitlines()
    assert len(lines) == 4  # header, rule, two rows: a failed job has no row
    # A lockstep record names its chains and groups (not the per-group batch), and a record from a later run says so.
    assert lines[3] == ("| Deforum variations in lockstep, 16 chains in 2 groups (call20, H100) | default, "
                        "model:reduce-overhead | 11.24 | 2.19 | 5.13× | 36.8% |")
    assert lines[2] == ("| video2video, 1 ControlNet, 20 steps @0.6, batch 32 | default, blocks:default | 10.50 | "
                        "1.50 (batch 1) · 4.20 (batch 8) | 7.00× · 2.50× | 45.1% |")


def test_tiny_video2video_ab_run_without_baselines_and_with_more_warm_start_probes(tmp_path, monkeypatch):
    """``--skip-baselines`` (an A/B of framefarm's side) records no speed-ups; each ``--warm-start-variants`` probe
    and ``--warm-start-eager-first`` runs in a process of its own and is recorded by name."""
    bench = load_bench(tmp_path, monkeypatch)
    variants = json.dumps([{"name": "profiled", "cprofile": True, "env": {"FRAMEFARM_PROBE_MARK": "1"}}])
    assert bench.main(["--tiny", "--jobs", "video2video", "--out", str(tmp_path), "--name", "ab", "--skip-baselines",
                       "--warm-start", "--warm-start-eager-first", "--warm-start-variants", variants]) == 0
    (record,) = json.loads((tmp_path / "ab.json").read_text())["records"]
    assert "error" not in record and record["baseline_through"] == "skipped"
    assert "speedup_vs_baseline" not in record and "speedup_vs_baseline_batched" not in record
    assert record["frames_per_s"] > 0 and record["fraction_of_ceiling"] > 0
    assert record["warm_start_s"] >= 0
    eager, profiled = record["warm_start_variants"]["eager_first"], record["warm_start_variants"]["profiled"]
    assert eager["eager_first_batch_s"] > 0 and eager["first_use_s"] >= 0 and eager["first_batch_s"] > 0
    assert profiled["env"] == {"FRAMEFARM_PROBE_MARK": "1"} and profiled["first_batch_s"] > 0
    table = (tmp_path / profiled["cprofile"]["cumulative"]).read_text()
    assert "render_batch" in table  # the renderer's own functions are in the first batch's profile


def test_dynamo_regions_measures_each_models_first_call_with_shared_graphs():
    """The CPU tool that times dynamo's share of a warm start: framefarm's own region walk (eager backend), each
    model's first call timed; blocks of one shape share one graph, so there are fewer graphs than regions."""
    spec = importlib.util.spec_from_file_location("dynamo_regions", SCRIPT.with_name("dynamo_regions.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from framefarm.renderers.accel import REPEATED_BLOCKS

    result = tool.measure(REPEATED_BLOCKS, size=64, tiny=True)
    assert set(result["dynamo_s_by_model"]) == {"vae_encoder", "controlnet", "unet", "vae_decoder"}
    assert result["dynamo_s"] > 0 and result["tracing_s"] > 0
    assert 0 < result["unique_graphs"] < sum(result["compiled_regions"].values())
