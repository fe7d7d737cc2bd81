"""Renderer tests share the session-wide tiny models folder of tests/conftest.py (``tiny_library``, ``models_dir``)
and the tiny motion modules written beside it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def motion_models(tiny_library):
    from tests.fixtures.tiny_motion import write_motion_models

    return write_motion_models(tiny_library.root)
