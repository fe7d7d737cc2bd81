"""Planning: deterministic, chunk-size independent frame keys, chained keys for Deforum."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framefarm.animation.camera import cumulative_camera, motion_matrices_2d
from framefarm.animation.plan import plan_job
from framefarm.errors import InputError
from framefarm.job import job_from_preset


def tunnel(**overrides):
    return job_from_preset("zoom-tunnel", [f"{k}={v}" for k, v in overrides.items()])


def test_plan_is_deterministic():
    a = plan_job(tunnel(), renderer="preview@1", chunk_size=8)
    b = plan_job(tunnel(), renderer="preview@1", chunk_size=8)
    assert a == b


def test_chunks_cover_every_frame_once():
    plan = plan_job(tunnel(frames=50), renderer="preview@1", chunk_size=16)
    assert [(c.start, c.stop) for c in plan.chunks] == [(0, 16), (16, 32), (32, 48), (48, 50)]
    assert sorted(plan.frame_keys) == list(range(50))


def test_frame_keys_do_not_depend_on_chunk_size():
    small = plan_job(tunnel(), renderer="preview@1", chunk_size=5)
    large = plan_job(tunnel(), renderer="preview@1", chunk_size=64)
    assert small.frame_keys == large.frame_keys
    assert small.chunks[0].key != large.chunks[0].key


def test_renderer_and_inputs_enter_the_keys():
    base = plan_job(tunnel(), renderer="preview@1").frame_keys
    assert plan_job(tunnel(), renderer="preview@2").frame_keys[0] != base[0]
    assert plan_job(tunnel(), renderer="preview@1", input_hashes={"init_image": "ab"}).frame_keys[0] != base[0]


def test_output_settings_and_name_do_not_change_frame_keys():
    base = plan_job(tunnel(), renderer="preview@1").frame_keys
    assert plan_job(tunnel(**{"output.crf": 30, "name": "other"}), renderer="preview@1").frame_keys == base


def test_deforum_keys_chain_so_a_change_invalidates_later_frames_only():
    before = plan_job(tunnel(frames=20), renderer="preview@1").frame_keys
    after = plan_job(tunnel(frames=20, **{"prompts.10": "a new prompt at frame ten"}), renderer="preview@1").frame_keys
    assert all(before[i] == after[i] for i in range(10))
    assert all(before[i] != after[i] for i in range(10, 20))


def test_summary_lists_ranges_and_seeds():
    summary = plan_job(tunnel(frames=6), renderer="preview@1", chunk_size=4).summary()
    assert summary["chunks"][1]["start"] == 4 and summary["chunks"][1]["stop"] == 6
    assert summary["chunks"][0]["seeds"] == [1234, 1235, 1236, 1237]  # seed behaviour "iter"


def test_chunk_size_must_be_positive():
    with pytest.raises(InputError, match="chunk_size"):
        plan_job(tunnel(), renderer="preview@1", chunk_size=0)


def test_motion_matrix_matches_opencv():
    n = 3
    zoom, angle = np.array([1.0, 1.1, 0.9]), np.array([0.0, 15.0, -30.0])
    tx, ty = np.array([0.0, 4.0, -2.0]), np.array([0.0, 1.0, 3.0])
    cx, cy = np.full(n, 0.5), np.full(n, 0.25)
    mats = motion_matrices_2d(zoom, angle, tx, ty, cx, cy, width=200, height=100)
    for i in range(n):
        rotate = np.vstack([cv2.getRotationMatrix2D((100.0, 25.0), angle[i], zoom[i]), [0, 0, 1]])
        translate = np.array([[1, 0, tx[i]], [0, 1, ty[i]], [0, 0, 1.0]])
        np.testing.assert_allclose(mats[i], rotate @ translate, atol=1e-12)


def test_cumulative_camera_composes_frame_moves():
    zoom = np.array([1.0, 2.0, 2.0])
    mats = motion_matrices_2d(zoom, np.zeros(3), np.zeros(3), np.zeros(3), np.full(3, 0.5), np.full(3, 0.5),
                              width=10, height=10)
    cams = cumulative_camera(mats)
    np.testing.assert_allclose(cams[0], np.eye(3))
    assert cams[2][0, 0] == pytest.approx(4.0)  # frame 0 unmoved, then ×2 twice


def test_video2video_chunks_are_whole_batches():
    job = job_from_preset("video-restyle", ["batch_size=4", "frames=20"])
    plan = plan_job(job, renderer="preview@1", chunk_size=6)
    assert plan.chunk_size == 8
    assert [(c.start, c.stop) for c in plan.chunks] == [(0, 8), (8, 16), (16, 20)]
