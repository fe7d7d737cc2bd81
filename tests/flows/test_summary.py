"""The markdown summary artifact: frames, timings, seeds, model hashes and output links, from a real plan."""

from __future__ import annotations

from framefarm.animation.plan import plan_job
from framefarm.flows.summary import MAX_CHUNK_ROWS, link, summary_markdown
from framefarm.flows.tasks import ChunkResult
from framefarm.job import job_from_preset


def test_summary_names_frames_timings_seeds_models_and_links():
    job = job_from_preset("zoom-tunnel", ["frames=12", "width=64", "height=64", "name=sum"])
    plan = plan_job(job, renderer="diffusers@1", chunk_size=4)
    results = [ChunkResult(index=0, rendered=(), reused=(0, 1, 2, 3), seconds=0.0),
               ChunkResult(index=1, rendered=(4, 5, 6, 7), reused=(), seconds=8.0, worker="r01-gpu0", visible_devices="0"),
               ChunkResult(index=2, rendered=(8, 9, 10, 11), reused=(), seconds=2.0, worker="r02-gpu1", visible_devices="1")]
    text = summary_markdown(plan, job, results, video="/renders/sum/sum.mp4", store_dir="s3://bucket/renders/sum",
                            report="/renders/sum/report.html", models={"checkpoint": "6ce0161689"}, seconds=12.5)
    assert "| frames | 8 rendered now, 4 reused (already in the store) |" in text
    assert "| time | wall 12.5 s; rendering 10.0 s in chunks (1.250 s/frame); slowest chunk 1 (8.0 s on r01-gpu0) |" in text
    seeds = plan.chunks[1].seeds
    assert f"| 1 | 4–7 | {seeds[0]}…{seeds[-1]} | 4 | 0 | 8.00 s | r01-gpu0 | 0 |" in text
    assert f"frame 0 → {plan.chunks[0].seeds[0]}, frame 11 → {plan.chunks[2].seeds[-1]}" in text
    assert "checkpoint `6ce0161689`" in text
    assert "[video](file:///renders/sum/sum.mp4)" in text
    assert "[manifest.json](s3://bucket/renders/sum/manifest.json)" in text
    assert "[report.html](file:///renders/sum/report.html)" in text
    assert "workers | r01-gpu0, r02-gpu1" in text


def test_long_jobs_keep_the_chunk_table_short():
    job = job_from_preset("zoom-tunnel", ["frames=120", "width=64", "height=64", "name=long"])
    plan = plan_job(job, renderer="preview@1", chunk_size=1)
    results = [ChunkResult(index=i, rendered=(i,), reused=(), seconds=0.1) for i in range(120)]
    text = summary_markdown(plan, job, results, video="v.mp4", store_dir="renders/long")
    assert f"| … | {120 - MAX_CHUNK_ROWS} more chunks in chunks.json |" in text
    assert text.count("\n| ") == 6 + MAX_CHUNK_ROWS + 1 + 1  # totals, header rows and the "more" row
    assert link("renders/long").startswith("file:///")
