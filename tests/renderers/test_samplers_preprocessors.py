"""A1111 sampler names and the ControlNet preprocessors."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.errors import InputError
from framefarm.renderers.models.skeleton import skeleton
from framefarm.renderers.preprocessors import PreprocessSettings, get_preprocessor, preprocess
from framefarm.renderers.samplers import SAMPLER_NAMES, find_sampler, make_scheduler
from framefarm.renderers.testcard import source_testcard


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("family", ["SD1.5", "SDXL"])
def test_every_sampler_builds_from_each_family_config(name, family):
    sampler = find_sampler(name)
    scheduler = make_scheduler(name, skeleton(family, "scheduler"))
    assert type(scheduler).__name__ == sampler.scheduler
    for key, value in sampler.overrides.items():
        assert scheduler.config[key] == value
    scheduler.set_timesteps(4)


def test_sampler_names_are_matched_loosely_and_unknown_ones_rejected():
    assert find_sampler("dpm++  2m karras").name == "DPM++ 2M Karras"
    with pytest.raises(InputError, match=r"model.sampler: is not a sampler framefarm knows \(got 'Euler b'\)"):
        find_sampler("Euler b")


FRAME = source_testcard(3, 96, 64, 24.0)


@pytest.mark.parametrize("name", ["none", "canny", "shuffle", "lineart_standard", "lineart-standard"])
def test_weight_free_preprocessors_work_at_the_frame_size_and_are_deterministic(name):
    settings = PreprocessSettings()
    first = preprocess(name, FRAME, seed=7, settings=settings)
    assert first.shape == FRAME.shape and first.dtype == np.uint8
    assert np.array_equal(first, preprocess(name, FRAME, seed=7, settings=settings))


def test_canny_finds_edges_and_shuffle_follows_the_seed():
    edges = preprocess("canny", FRAME, seed=0, settings=PreprocessSettings())
    assert set(np.unique(edges)) == {0, 255}
    one = preprocess("shuffle", FRAME, seed=1, settings=PreprocessSettings())
    two = preprocess("shuffle", FRAME, seed=2, settings=PreprocessSettings())
    assert not np.array_equal(one, two)


def test_weight_needing_preprocessors_name_the_missing_file(tmp_path):
    with pytest.raises(InputError, match="needs an annotator folder"):
        preprocess("depth", FRAME, seed=0, settings=PreprocessSettings(annotators=None))
    with pytest.raises(InputError, match=r"needs the file\(s\) body_pose_model.pth, hand_pose_model.pth, facenet.pth"):
        preprocess("openpose", FRAME, seed=0, settings=PreprocessSettings(annotators=tmp_path))
    (tmp_path / "dpt_hybrid-midas-501f0c75.pt").write_bytes(b"")
    try:
        import controlnet_aux  # noqa: F401  (only its absence is tested here)
    except ImportError:
        with pytest.raises(InputError, match=r"needs controlnet-aux.*framefarm\[annotators\]"):
            preprocess("depth", FRAME, seed=0, settings=PreprocessSettings(annotators=tmp_path))


def test_unknown_preprocessor_lists_the_known_ones():
    with pytest.raises(InputError, match="is not a preprocessor.*canny.*shuffle"):
        get_preprocessor("cany")


def test_built_ins_are_registered_as_entry_points():
    from importlib.metadata import entry_points

    names = {p.name for p in entry_points(group="framefarm.preprocessors")}
    assert {"canny", "shuffle", "lineart_standard", "none"} <= names
    renderers = {p.name for p in entry_points(group="framefarm.renderers")}
    assert {"preview", "diffusers"} <= renderers


def test_plug_ins_are_loaded_once_per_process_and_a_broken_one_is_named(monkeypatch):
    """A render looks a preprocessor up for every frame; the installed distributions are scanned once. A plug-in is
    an entry point in the ``framefarm.preprocessors`` group (here two real EntryPoint objects)."""
    from importlib.metadata import EntryPoint

    from framefarm.errors import RenderError
    from framefarm.renderers import preprocessors

    scans = []
    points = [EntryPoint("edges2", "framefarm.renderers.preprocessors:canny", preprocessors.ENTRY_POINT_GROUP)]

    def entry_points(*, group):
        scans.append(group)
        return points

    monkeypatch.setattr(preprocessors, "entry_points", entry_points)
    preprocessors.plugins.cache_clear()
    try:
        for _ in range(3):
            assert preprocessors.get_preprocessor("edges2") is preprocessors.BUILTIN["canny"]
        assert scans == [preprocessors.ENTRY_POINT_GROUP]
        assert not preprocessors.thread_safe("edges2")  # a plug-in: framefarm does not know its code
        points.append(EntryPoint("broken", "framefarm.no_such_module:thing", preprocessors.ENTRY_POINT_GROUP))
        preprocessors.plugins.cache_clear()
        with pytest.raises(RenderError, match="plug-in 'broken'"):
            preprocessors.available()
    finally:
        preprocessors.plugins.cache_clear()  # the next test scans the real distributions again
