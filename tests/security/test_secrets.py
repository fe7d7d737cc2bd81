"""Secrets never leave the environment: after a render into S3 (real SeaweedFS), the secret key appears in none of
the logs (Python logging at DEBUG and Prefect's stored run logs), the Prefect artifacts, or any file the job wrote
(job.json, plan.json, manifest, chunks.json, report.html, frames' records)."""

from __future__ import annotations

import logging
import os
import uuid

import pytest

from framefarm.flows.render import render_job
from framefarm.job import job_from_preset
from framefarm.storage import FrameStore

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


def test_the_s3_secret_key_is_never_logged_or_written(s3_bucket, caplog):
    import fsspec
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert len(secret) >= 8
    fsspec.get_filesystem_class("s3").clear_instance_cache()  # a client of this server, not an earlier test's
    name = f"secret-{uuid.uuid4().hex[:8]}"
    job = job_from_preset("zoom-tunnel", ["frames=4", "width=64", "height=64", f"name={name}"])
    with caplog.at_level(logging.DEBUG):
        result = render_job(job, out=s3_bucket, chunk_size=2)
    assert result.frames == 4
    assert secret not in caplog.text

    store = FrameStore(s3_bucket, name)
    written = store.fs.find(store.job_dir)
    assert any(p.endswith("job.json") for p in written) and any(p.endswith("report.html") for p in written)
    for path in written:
        if not path.endswith(".png"):
            assert secret.encode() not in store.fs.cat_file(path), path

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
        run = next(r for r in runs if r.name == f"render-{name}")
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        artifacts = client.read_artifacts()
    assert all(secret not in (entry.message or "") for entry in logs)  # (few at the test log level: WARNING)
    assert all(secret not in str(artifact.data) for artifact in artifacts)
    assert secret not in str(run.parameters)
