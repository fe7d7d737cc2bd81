"""The object store goes away mid-job: SeaweedFS (real, S3 API) is killed while chunks are being written to it and
started again on the same data and ports. The job either rides it out (S3 client retries, then chunk retries) or
fails clearly; either way every frame finished before the outage is intact, and the job completes (after a resume
where needed) with frames identical to a clean render."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import fsspec
import pytest

from framefarm.flows.render import render_job
from framefarm.job import job_from_preset
from framefarm.storage import FrameStore, sha256_bytes
from tests.faults.conftest import fault_trials, frame_hashes
from tests.support.s3_server import free_ports, seaweedfs_s3

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

FRAMES = 32
BUCKET = "restart-test"


def tunnel(name: str):
    job = job_from_preset("zoom-tunnel", [f"frames={FRAMES}", "width=256", "height=256", f"name={name}",
                                          "farm.chunk_retries=3", "farm.retry_delay_seconds=1",
                                          "farm.error_budget=10", "farm.max_parallel_chunks=2"])
    return job


def _fresh_s3_clients() -> None:
    # fsspec caches one S3FileSystem per argument set; the endpoint comes from the environment, so a cached
    # instance could point at another test's server.
    fsspec.get_filesystem_class("s3").clear_instance_cache()


def s3_frame_hashes(root: str, job: str) -> dict[str, str]:
    store = FrameStore(root, job)
    store.fs.invalidate_cache()
    names = sorted(store.fs.ls(store.frames_dir, detail=False))
    return {os.path.basename(n): sha256_bytes(store.fs.cat_file(n)) for n in names if n.endswith(".png")}


def test_object_store_restarted_mid_job(tmp_path, monkeypatch, fault_log):
    clean = tmp_path / "clean"
    render_job(tunnel("outage"), out=str(clean), chunk_size=4)
    expected = frame_hashes(clean / "outage" / "frames")

    data, ports = tmp_path / "weed", free_ports()
    rng = random.Random(2026)
    server = seaweedfs_s3(data, ports=ports)
    endpoint, process = server.__enter__()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "framefarm")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "framefarm-secret")
    # Few, quick client-side retries: the outage should reach framefarm's own retries, not hide inside botocore.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    _fresh_s3_clients()
    try:
        fsspec.filesystem("s3").mkdir(BUCKET)
        for trial in range(fault_trials(1)):  # CI: one restart (each costs a SeaweedFS start); full run: 20
            root = f"s3://{BUCKET}/trial{trial}"
            job = tunnel("outage")
            store = FrameStore(root, job.name)
            outcome: dict = {}

            def run(root=root, job=job, outcome=outcome) -> None:
                try:
                    outcome["result"] = render_job(job, out=root, chunk_size=4)
                except Exception as exc:  # noqa: BLE001 - any clear failure is acceptable; checked below
                    outcome["error"] = exc

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            target = rng.randint(2, FRAMES // 2)
            deadline = time.monotonic() + 120
            while thread.is_alive() and time.monotonic() < deadline:
                try:
                    if store.count_records() >= target:
                        break
                except Exception:  # noqa: BLE001 - the store is still starting
                    pass
                time.sleep(0.05)
            finished_before = set(store.records())
            os.killpg(process.pid, signal.SIGKILL)  # the store crashes: no clean shutdown
            process.wait()
            server.__exit__(None, None, None)
            time.sleep(rng.uniform(0.5, 3.0))
            server = seaweedfs_s3(data, ports=ports)
            endpoint, process = server.__enter__()
            thread.join(timeout=300)
            assert not thread.is_alive(), "the render hung after the store came back"
            _fresh_s3_clients()
            records = FrameStore(root, job.name).records()
            assert finished_before <= set(records)  # nothing finished was forgotten
            now = s3_frame_hashes(root, job.name)
            lost = sum(now.get(f"{i:06d}.png") != expected[f"{i:06d}.png"] for i in finished_before)
            assert lost == 0
            if "error" in outcome:
                result = render_job(job, out=root, chunk_size=4)  # the clear failure: resume once it is back
                how = f"failed clearly ({type(outcome['error']).__name__}), resumed"
            else:
                result = outcome["result"]
                how = "rode it out"
            assert result.frames == FRAMES
            assert s3_frame_hashes(root, job.name) == expected
            fault_log.trial("object store (SeaweedFS) killed and restarted mid-job", survived=True, frames_lost=lost,
                            outcome=f"{how}, frames identical", finished_before=len(finished_before))
    finally:
        if process.poll() is None:
            server.__exit__(None, None, None)
        _fresh_s3_clients()
