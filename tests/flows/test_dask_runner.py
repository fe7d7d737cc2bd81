"""The same flow on Prefect's Dask task runner against an existing Dask cluster (a local one of 2 worker processes
here): the frames are byte-identical to the default runner's, and both Dask workers took chunks."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from framefarm.errors import InputError
from framefarm.flows.dask_runner import dask_task_runner
from framefarm.flows.render import render_job
from framefarm.job import job_from_preset



def hashes(root, job):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / job / "frames").glob("*.png"))}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_a_local_dask_cluster_renders_the_same_frames(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed", reason="prefect-dask is not installed (the dask extra)")
    monkeypatch.delenv("FRAMEFARM_WORKER_ID", raising=False)
    job = job_from_preset("zoom-tunnel", ["frames=16", "width=64", "height=64", "name=dask"])
    reference = render_job(job, out=str(tmp_path / "threads"), chunk_size=4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        result = render_job.with_options(task_runner=dask_task_runner(cluster.scheduler_address))(
            job, out=str(tmp_path / "dask"), chunk_size=4)
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert result.rendered == reference.rendered == 16
    assert hashes(tmp_path / "dask", "dask") == hashes(tmp_path / "threads", "dask")
    assert len(hashes(tmp_path / "dask", "dask")) == 16
    assert len(executed) == 2 and all(executed.values()), executed  # both Dask worker processes took chunks


@pytest.mark.parametrize("address", ["http://head:8786/", "tcp://head 8786", ""])
def test_a_bad_scheduler_address_is_an_input_error(address):
    with pytest.raises(InputError, match="--dask: is not a Dask scheduler address.*Example: --dask tcp://"):
        dask_task_runner(address)


def test_render_refuses_dask_with_gpus(job_file):
    path = job_file('preset = "zoom-tunnel"\nname = "d"\nframes = 2\nwidth = 64\nheight = 64\n')
    run = subprocess.run([sys.executable, "-m", "framefarm", "render", str(path), "--gpus", "0,1",
                          "--dask", "tcp://head:8786"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "--dask: cannot be combined with --gpus" in " ".join(run.stderr.split())
