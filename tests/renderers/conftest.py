"""Shared fixtures for the renderer tests: one tiny A1111-style models folder per session, built once."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def tiny_library(tmp_path_factory):
    """The tiny models (tests/fixtures/tiny_models.py) in a session-wide folder; hashes cached beside it."""
    import torch

    from tests.fixtures.tiny_models import build_library

    # One thread: CPU results are then independent of the machine's core count, and the 2-core CI box is not
    # oversubscribed by torch while Prefect's threads run.
    torch.set_num_threads(1)
    saved = {k: os.environ.get(k) for k in ("FRAMEFARM_CACHE_DIR", "FRAMEFARM_MODELS", "FRAMEFARM_ANNOTATORS")}
    os.environ["FRAMEFARM_CACHE_DIR"] = str(tmp_path_factory.mktemp("framefarm-cache"))
    os.environ.pop("FRAMEFARM_MODELS", None)
    os.environ.pop("FRAMEFARM_ANNOTATORS", None)
    library = build_library(tmp_path_factory.mktemp("models"))
    yield library
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def models_dir(tiny_library) -> str:
    return str(tiny_library.root)
