"""Shots of a Deforum job (``shots``): each shot its own chain, shots rendered side by side through the Prefect flow,
frames identical to rendering them one after another and across chunk sizes, resumed per shot; the planner's
shot rules (chunks, keys, cadence, seeds, camera) and the errors for bad shot lists."""

from __future__ import annotations

import numpy as np
import pytest

from framefarm.animation.plan import plan_job
from framefarm.errors import InputError
from framefarm.job import validate_job
from tests.renderers.test_deforum_chain import chain_frames, frame_hashes, small_job


def deforum(frames=10, **fields):
    """A Deforum job for the planner (no models needed: planning never loads one)."""
    data = dict(kind="deforum", name="shots", width=64, height=64, frames=frames, fps=8, seed=11,
                prompts={"0": "a lighthouse", "6": "a storm"}, motion=dict(zoom="0:(1.02)", angle="0:(1+t*0.1)"))
    data.update(fields)
    return validate_job(data)


# ----- The job model: shot lists as Deforum users write them, and clear errors ----------------------------------


def test_shots_as_frame_numbers_or_tables_with_an_implicit_first_shot():
    as_numbers = deforum(shots=[4, 7])
    assert [s.start for s in as_numbers.shot_list] == [0, 4, 7]  # frames before the first cut are a shot too
    as_tables = deforum(shots=[{"start": 0}, {"start": 4, "seed_offset": 100}, 7])
    assert [(s.start, s.seed_offset) for s in as_tables.shot_list] == [(0, 0), (4, 100), (7, 0)]
    assert [s.start for s in deforum().shot_list] == [0]


@pytest.mark.parametrize(("shots", "message"), [
    ([0, 6, 3], r"shots: are not in order \(6 comes before 3\) \(got \[0, 6, 3\]\)\. List each shot's first frame"),
    ([0, 4, 4], r"shots: start at frame 4 twice"),
    ([0, 10], r"shots: start at frame 10, past the job's last frame \(9\)"),
    ([-1, 4], r"shots\.0\.start: Input should be greater than or equal to 0"),
    ([{"start": 2, "seed": 5}], r"shots\.0\.seed: is not a known field"),
])
def test_bad_shot_lists_are_input_errors(shots, message):
    with pytest.raises(InputError, match=message):
        deforum(shots=shots)


# ----- The planner --------------------------------------------------------------------------------------------


def test_chunks_never_cross_a_shot_and_keys_depend_on_the_shot_start():
    job = deforum(shots=[0, 5, 7])
    plan = plan_job(job, renderer="test", chunk_size=4)
    assert plan.shots == (0, 5, 7)
    assert [(c.start, c.stop, c.shot) for c in plan.chunks] == [(0, 4, 0), (4, 5, 0), (5, 7, 1), (7, 10, 2)]
    assert plan.summary()["chunks"][2]["shot"] == 1

    unsplit = plan_job(deforum(), renderer="test", chunk_size=4).frame_keys
    keys = plan.frame_keys
    # A job without shots keeps its keys; a shot's frames depend only on their own shot (the chain within the shot
    # before them, its start): cutting at 5 and 7 leaves frames 0–4 as they were, and moving the cut at 7 to 8
    # changes the keys of frames 5… of the shots that moved, not of shot 0.
    assert plan_job(deforum(shots=[0]), renderer="test", chunk_size=4).frame_keys == unsplit
    assert [keys[i] == unsplit[i] for i in range(10)] == [True] * 5 + [False] * 5
    moved = plan_job(deforum(shots=[5, 8]), renderer="test", chunk_size=3).frame_keys
    assert [moved[i] == keys[i] for i in range(10)] == [True] * 7 + [False] * 3
    # Schedules keep the global frame index t: the numbers match the unsplit job's.
    whole = plan_job(deforum(), renderer="test", chunk_size=10).chunks[0]
    assert plan.chunks[2].values["angle"] == whole.values["angle"][5:7]


def test_cadence_seeds_and_camera_restart_at_each_shot():
    plan = plan_job(deforum(shots=[0, 5], cadence=2, seeds=dict(behavior="iter")), renderer="test", chunk_size=10)
    seeds = [s for c in plan.chunks for s in c.seeds]
    # Diffused frames 0, 2, 4 | 5, 7, 9 (a shot's first frame is diffused): one seed step per diffused frame.
    assert seeds == [11, 11, 12, 12, 13, 14, 14, 15, 15, 16]
    offset = plan_job(deforum(shots=[0, {"start": 5, "seed_offset": 1000}], cadence=2), renderer="test",
                      chunk_size=10)
    assert [s for c in offset.chunks for s in c.seeds] == seeds[:5] + [s + 1000 for s in seeds[5:]]
    # Each shot's cumulative camera starts at the identity (a fresh sequence), the unsplit job's does not at 5.
    assert np.allclose(plan.chunks[1].camera_matrix(5), np.eye(3))
    assert not np.allclose(plan_job(deforum(), renderer="test", chunk_size=10).chunks[0].camera_matrix(5), np.eye(3))


# ----- The chain: a shot starts fresh -------------------------------------------------------------------------


def test_a_shot_starts_fresh_from_txt2img_or_its_own_init_image(tmp_path, models_dir):
    from framefarm.images import encode_png
    from framefarm.renderers.testcard import source_testcard

    motion = dict(zoom="0:(1.05)", strength="0:(0.5)")
    unsplit = chain_frames(small_job(models_dir, frames=3, motion=motion))
    split = chain_frames(small_job(models_dir, frames=3, motion=motion, shots=[0, 2]))
    assert all(np.array_equal(unsplit[i], split[i]) for i in (0, 1))  # shot 0 is the unsplit job's start
    assert not np.array_equal(unsplit[2], split[2])  # shot 1 is not a continuation of frame 1 ...
    # ... but txt2img with frame 2's own seed and prompt: what frame 0 of a job starting there would be
    alone = chain_frames(small_job(models_dir, frames=1, seed=split_seed(models_dir, motion), motion=motion))
    assert np.array_equal(split[2], alone[0])

    card = source_testcard(3, 64, 64, 8)
    (tmp_path / "init.png").write_bytes(encode_png(card))
    with_init = chain_frames(small_job(models_dir, frames=3, motion=motion,
                                       shots=[0, {"start": 2, "init_image": str(tmp_path / "init.png")}]))
    assert np.array_equal(with_init[1], split[1])
    # img2img of the shot's init image at strength 0.5 stays closer to it than txt2img does.
    assert np.abs(with_init[2].astype(int) - card).mean() < np.abs(split[2].astype(int) - card).mean()


def split_seed(models_dir, motion) -> int:
    return plan_job(small_job(models_dir, frames=3, motion=motion, shots=[0, 2]), renderer="t",
                    chunk_size=3).chunks[1].seeds[0]


# ----- Through the Prefect flow -------------------------------------------------------------------------------


def chunk_runs(state) -> dict[int, tuple]:
    """``{chunk index: (start, end)}`` of a flow run's render-chunk task runs, from the Prefect server."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    return {int(run.name.rsplit("-", 1)[1]): (run.start_time, run.end_time) for run in runs
            if run.name.startswith("render-chunk-") and run.start_time is not None}


@pytest.mark.usefixtures("prefect_server")
def test_two_shots_render_side_by_side_like_one_after_another_and_resume_per_shot(tmp_path, models_dir):
    from framefarm.flows.render import render_job

    # Two shots of three frames at cadence 2; the chunks render in this process's threads (chunk_timeout off), so
    # the two shots' chunks really run at the same time.
    fields = dict(frames=6, cadence=2, shots=[0, {"start": 3, "seed_offset": 7}],
                  motion=dict(zoom="0:(1.04)", angle="0:(2)", strength="0:(0.6)"), prompts={"0": "a red cat"})
    parallel = small_job(models_dir, **fields, farm=dict(max_parallel_chunks=2, chunk_timeout=None))
    state = render_job(parallel, backend="diffusers", out=str(tmp_path / "a"), chunk_size=2, return_state=True)
    first = state.result()
    assert [(c.start, c.stop, c.shot) for c in plan_job(parallel, renderer="t", chunk_size=2).chunks] == \
        [(0, 2, 0), (2, 3, 0), (3, 5, 1), (5, 6, 1)]
    runs = chunk_runs(state)
    # Chunk 2 (shot 1's first) ran while chunk 0 (shot 0's first) did: they overlap in time.
    assert runs[2][0] < runs[0][1] and runs[0][0] < runs[2][1], runs
    # A shot's chunks still run in order: chunk 1 starts after chunk 0 ended.
    assert runs[1][0] >= runs[0][1] and runs[3][0] >= runs[2][1], runs

    # One chunk at a time (shots one after another), at another chunk size: the same frames.
    one_by_one = small_job(models_dir, **fields, farm=dict(max_parallel_chunks=1, chunk_timeout=None))
    second = render_job(one_by_one, backend="diffusers", out=str(tmp_path / "b"), chunk_size=3)
    a = frame_hashes(tmp_path / "a" / "small" / "frames")
    assert len(a) == 6 and a == frame_hashes(tmp_path / "b" / "small" / "frames")
    assert len(set(a.values())) == 6
    assert (first.rendered, second.rendered) == (6, 6)

    # Kill-and-resume stand-in: shot 0's last two frames are lost; the rerun renders exactly those, from shot 0's
    # own frame 0 (mid-cadence), and leaves shot 1 alone.
    for name in ("000001.png", "000002.png"):
        (tmp_path / "a" / "small" / "frames" / name).unlink()
    again = render_job(parallel, backend="diffusers", out=str(tmp_path / "a"), chunk_size=2)
    assert again.rendered == 2
    assert sorted(f for c in again.chunks for f in c.rendered) == [1, 2]
    assert frame_hashes(tmp_path / "a" / "small" / "frames") == a


def test_the_preview_starts_each_shot_at_its_own_camera_and_init_image(tmp_path):
    from framefarm.images import encode_png
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.preview import PreviewRenderer
    from framefarm.renderers.testcard import source_testcard

    card = source_testcard(5, 64, 64, 8)
    (tmp_path / "init.png").write_bytes(encode_png(card))
    job = deforum(shots=[0, 4, {"start": 7, "init_image": str(tmp_path / "init.png")}])
    plan = plan_job(job, renderer="preview@1", chunk_size=10)
    frames = {f: image for chunk in plan.chunks
              for f, image in PreviewRenderer().render(chunk, list(chunk.frames), RenderContext(job=job))}
    body = slice(0, 40)  # above the head-up strip (the bottom 18 rows), which shows each frame's own number
    assert np.array_equal(frames[4][body], frames[0][body])  # shot 1 starts where the job started: the card at rest
    assert not np.array_equal(frames[3][body], frames[0][body])
    assert np.array_equal(frames[7][body], card[body])  # shot 2 starts on its init image
