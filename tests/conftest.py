"""Shared fixtures. Prefect state goes to a per-session temp home, so tests never touch ~/.prefect."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before anything imports prefect: its settings are read at import time.
_PREFECT_HOME = tempfile.mkdtemp(prefix="framefarm-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(Path(_PREFECT_HOME) / "storage")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite) for the whole session: starting one costs ~15 s."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def job_file(tmp_path: Path):
    """Write a TOML job file and return its path: ``job_file("name = 'x'\\nkind = 'deforum'")``."""

    def write(text: str, name: str = "job.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def s3_bucket(tmp_path_factory):
    """A bucket on a real S3-compatible server (SeaweedFS), with credentials in the environment as users set them.

    Yields the bucket's URL (``s3://framefarm-test``).
    """
    import fsspec

    from tests.support.s3_server import seaweedfs_s3

    # Session-wide environment, restored afterwards (MonkeyPatch.context: the function-scoped fixture is not usable).
    with seaweedfs_s3(tmp_path_factory.mktemp("seaweedfs")) as (endpoint, _process), \
            pytest.MonkeyPatch.context() as patch:
        for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "framefarm",
                           "AWS_SECRET_ACCESS_KEY": "framefarm-secret"}.items():
            patch.setenv(key, value)
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir("framefarm-test")
        yield "s3://framefarm-test"


# The tiny A1111-style models folder (tests/fixtures/tiny_models.py), built once per session for every test
# that renders with diffusers: renderers, faults, benchmarks.
@pytest.fixture(scope="session")
def tiny_library(tmp_path_factory):
    """The tiny models (tests/fixtures/tiny_models.py) in a session-wide folder; hashes cached beside it."""
    import torch

    from tests.fixtures.tiny_models import build_library

    # One thread: CPU results are then independent of the machine's core count, and the 2-core CI box is not
    # oversubscribed by torch while Prefect's threads run.
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FRAMEFARM_CACHE_DIR", str(tmp_path_factory.mktemp("framefarm-cache")))
        patch.delenv("FRAMEFARM_MODELS", raising=False)
        patch.delenv("FRAMEFARM_ANNOTATORS", raising=False)
        yield build_library(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def models_dir(tiny_library) -> str:
    return str(tiny_library.root)


def pytest_collection_modifyitems(config, items):
    # `make test` runs xdist workers with --dist loadgroup: the integration tests, each of which starts a real
    # Prefect server, workers and render processes, go to one worker one after another instead of side by side.
    for item in items:
        if "tests/integration/" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("integration"))
