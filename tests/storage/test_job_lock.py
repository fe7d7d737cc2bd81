"""The render lock of a job folder, on a local disk and on a real S3-compatible server (SeaweedFS)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from framefarm.storage import FrameStore
from framefarm.storage.job_lock import LOCK_NAME, JobLock, JobLocked


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid  # reaped: no process has this pid now (reuse within the test is vanishingly unlikely)


def plant(store: FrameStore, **fields) -> None:
    """Write a lock as another render would have left it."""
    holder = {"token": uuid.uuid4().hex, "host": socket.gethostname(), "pid": dead_pid(), "pid_started": None,
              "command": "framefarm render old.toml", "started": time.time(), "heartbeat": time.time(), "ttl": 120.0,
              "pid_namespace": os.readlink("/proc/self/ns/pid"), **fields}
    store.fs.makedirs(store.job_dir, exist_ok=True)
    store.fs.pipe_file(store.path(LOCK_NAME), json.dumps(holder).encode())


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return FrameStore(str(tmp_path), "job")
    bucket = request.getfixturevalue("s3_bucket")
    return FrameStore(bucket, f"job-{uuid.uuid4().hex[:8]}")


def test_a_held_lock_refuses_a_second_render_and_is_free_after_release(store):
    first = JobLock(store, "framefarm render a.toml")
    first.acquire()
    with pytest.raises(JobLocked, match=r"--out: is being rendered by pid \d+ on .* \(framefarm render a.toml\)"):
        JobLock(store, "framefarm render b.toml").acquire()
    first.release()
    assert not store.exists(LOCK_NAME)
    with JobLock(store, "framefarm render b.toml") as second:
        second.acquire()
        assert json.loads(store.fs.cat_file(store.path(LOCK_NAME)))["command"] == "framefarm render b.toml"


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(store):
    plant(store)
    with JobLock(store, "framefarm render new.toml") as lock:
        lock.acquire()
        assert json.loads(store.fs.cat_file(store.path(LOCK_NAME)))["token"] == lock.token
        assert lock.took_over is not None and lock.took_over.command == "framefarm render old.toml"


def test_a_lock_from_another_host_is_taken_over_only_once_its_heartbeat_is_older_than_its_ttl(store):
    plant(store, host="render-07", pid=1, heartbeat=time.time() - 30, ttl=120.0)
    with pytest.raises(JobLocked, match="render-07"):
        JobLock(store, "x").acquire()
    plant(store, host="render-07", pid=1, heartbeat=time.time() - 200, ttl=120.0)
    with JobLock(store, "x") as lock:
        lock.acquire()


def test_a_dead_looking_pid_in_another_container_of_the_same_host_name_is_not_taken_for_dead(store):
    plant(store, pid_namespace="pid:[1]", heartbeat=time.time() - 30)  # same host name, another pid namespace
    with pytest.raises(JobLocked):
        JobLock(store, "x").acquire()


def test_of_many_renders_finding_one_stale_lock_exactly_one_takes_it_over(store):
    plant(store)
    locks = [JobLock(store, f"render {i}") for i in range(6)]
    results: list[object] = [None] * len(locks)
    barrier = threading.Barrier(len(locks))

    def contend(i: int) -> None:
        barrier.wait()
        results[i] = locks[i].try_acquire()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(locks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [lock for lock, result in zip(locks, results) if result is None]
    assert len(winners) == 1
    assert json.loads(store.fs.cat_file(store.path(LOCK_NAME)))["token"] == winners[0].token


def test_the_heartbeat_notices_when_the_lock_was_taken_away(tmp_path):
    store = FrameStore(str(tmp_path), "job")
    lock = JobLock(store, "framefarm render a.toml", ttl=0.6)  # a beat every 0.1 s
    lock.acquire()
    plant(store, pid=1)  # someone decided we were dead
    deadline = time.monotonic() + 5
    while lock.lost is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.lost is not None and "taken over by pid 1" in lock.lost
    lock.release()
    assert store.exists(LOCK_NAME)  # not ours any more: left alone
