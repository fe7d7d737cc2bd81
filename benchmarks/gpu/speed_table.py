"""The README's GPU speed table, from the records of one ``bench_gpu.py`` run (so the table never drifts from the
measurements it quotes).

Run: ``python benchmarks/gpu/speed_table.py benchmarks/results/gpu_throughput.json``; prints Markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LABELS = {
    "video2video": "video2video, 1 ControlNet, 20 steps @0.6",
    "deforum_chain": "Deforum chain (zoom-tunnel, @0.65), one chain",
    "animatediff": "AnimateDiff, 16-frame windows",
    "sdxl_img2img": "SDXL img2img 1024²",
    "deforum_lockstep": "Deforum variations in lockstep",
}


def rows(document: dict) -> list[str]:
    """One Markdown row per record without an error."""
    out = []
    for r in document["records"]:
        if "error" in r:
            continue
        label = LABELS.get(r["job"], r["job"])
        if r.get("chains"):
            groups = r.get("lockstep_groups") or [r["chains"]]
            label += f", {r['chains']} chains in {len(groups)} group{'s' if len(groups) > 1 else ''}"
        elif r.get("batch_size", 1) > 1:
            label += f", batch {r['batch_size']}"
        if r.get("run"):  # a record measured in another run than the file's (its own device and baseline)
            label += f" ({r['run']}, {r.get('device', '?')})"
        baseline = f"{r['baseline_frames_per_s']:.2f}"
        speedup = f"{r['speedup_vs_baseline']:.2f}×"
        batched = r.get("baseline_batched")
        if batched:
            baseline += f" (batch 1) · {batched['frames_per_s']:.2f} (batch {batched['batch_size']})"
            speedup += f" · {r['speedup_vs_baseline_batched']:.2f}×"
        levers = "default" if r.get("default_levers") else r.get("levers", "?")
        compiled = r.get("compiled", "?")
        out.append(f"| {label} | {levers}, {compiled} | {r['frames_per_s']:.2f} | {baseline} | {speedup} | "
                   f"{r['fraction_of_ceiling']:.1%} |")
    return out


def table(document: dict) -> str:
    head = ["| job (512² unless said) | levers, compiled as | frames/s | plain diffusers | speed-up | of the FLOP ceiling |",
            "|---|---|---:|---:|---:|---:|"]
    return "\n".join(head + rows(document))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a bench_gpu.py JSON file")
    args = parser.parse_args(argv)
    print(table(json.loads(Path(args.results).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
