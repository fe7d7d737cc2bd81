"""What a set of compiled regions costs a warm process in dynamo alone, measured on a CPU.

A second worker process on a host reads Inductor's kernels back from the on-disk cache, but dynamo still traces
every region's forward again and builds its guards: on an H200 that was 12.9 s of a 16.6 s warm start (video2video,
batch 32). That part is Python, the same work on any machine, so it can be compared here without a GPU: full-size
SD1.5 UNet, ControlNet and VAE (random weights, float32, channels-last, fused projections as a worker has them) are
compiled region by region as ``framefarm.renderers.accel`` does, but with dynamo's ``eager`` backend, which runs the
captured graphs as they are (no Inductor), and small frames (the graphs' ops, and so the tracing, do not depend on
the frame size). Each model's first call minus its second is what dynamo took for it.

    python benchmarks/gpu/dynamo_regions.py                      # framefarm's regions
    python benchmarks/gpu/dynamo_regions.py --regions Transformer2DModel,ResnetBlock2D --out results/

Prints one JSON line (and writes it to ``--out``/dynamo_regions.json). Figures move by about a second from run to
run on a shared 2-core machine: compare sets in one sitting, more than once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def measure(regions: tuple[str, ...], size: int = 128, frames: int = 2, tiny: bool = False) -> dict:
    """Dynamo's seconds for each model's first call with ``regions`` compiled (``tiny``: the test suite's toy
    channel counts, for a smoke run)."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from torch._dynamo.utils import compilation_time_metrics, compile_times, counters

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_gpu import TINY_UNET, TINY_VAE, _config

    from framefarm.renderers import accel

    torch._dynamo.reset()
    counters.clear()  # the process's earlier compilations (a test suite's) must not count here
    compilation_time_metrics.clear()
    compile_, framefarm_regions = torch.compile, accel.REPEATED_BLOCKS
    # framefarm's own region walk over ``regions``, with the eager backend: dynamo's tracing and guards, no Inductor.
    # Both are put back once the regions are chosen, so a process that goes on (a test suite) keeps framefarm's.
    torch.compile = lambda fn, **options: compile_(fn, backend="eager", dynamic=False)
    accel.REPEATED_BLOCKS = regions
    try:
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config({**_config("sd15", "unet"), **(TINY_UNET if tiny else {})}).eval()
        vae = AutoencoderKL.from_config({**_config("sd15", "vae"), **(TINY_VAE if tiny else {})}).eval()
        controlnet = ControlNetModel.from_unet(unet).eval()
        for model in (unet, vae, controlnet):
            model.to(memory_format=torch.channels_last)
        for model in (unet, controlnet):
            model.fuse_qkv_projections()
        graphs = {name: accel.use_compiled(model, ("blocks", None))
                  for name, model in (("unet", unet), ("vae", vae), ("controlnet", controlnet))}
    finally:
        torch.compile, accel.REPEATED_BLOCKS = compile_, framefarm_regions

    images = torch.randn(frames, 3, size, size)
    latents = torch.randn(2 * frames, 4, size // 8, size // 8)  # classifier-free guidance doubles the batch
    text = torch.randn(2 * frames, 77, unet.config.cross_attention_dim)
    control = torch.randn(2 * frames, 3, size, size)

    def stages():
        encoded = vae.encode(images).latent_dist.mean
        yield "vae_encoder"
        down, mid = controlnet(latents, 10, encoder_hidden_states=text, controlnet_cond=control, return_dict=False)
        yield "controlnet"
        unet(latents, 10, encoder_hidden_states=text, down_block_additional_residuals=down,
             mid_block_additional_residual=mid)
        yield "unet"
        vae.decode(encoded)
        yield "vae_decoder"

    def timed() -> dict[str, float]:
        seconds, last = {}, time.perf_counter()
        for stage in stages():
            now = time.perf_counter()
            seconds[stage], last = now - last, now
        return seconds

    with torch.no_grad():
        first, second = timed(), timed()
    names, values = compile_times(repr="csv", aggregate=True)
    phases = {str(n): float(v) for n, v in zip(names, values)}
    return {
        "regions": list(regions), "compiled_regions": graphs,
        "dynamo_s_by_model": {k: round(first[k] - second[k], 2) for k in first},
        "dynamo_s": round(sum(first.values()) - sum(second.values()), 2),
        "tracing_s": round(phases.get("bytecode_tracing", 0.0), 2),
        "build_guards_s": round(phases.get("build_guards", 0.0), 2),
        "unique_graphs": int(counters["stats"]["unique_graphs"]),
        "torch": torch.__version__, "frame_size": size, "frames": frames, "tiny": tiny,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", default=None, help="comma list of block classes (default: framefarm's)")
    parser.add_argument("--out", default=None, help="folder for dynamo_regions.json")
    parser.add_argument("--tiny", action="store_true", help="toy channel counts (a smoke run, not a measure)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    from framefarm.renderers.accel import REPEATED_BLOCKS

    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip()) if args.regions else REPEATED_BLOCKS
    result = measure(regions, size=64 if args.tiny else 128, tiny=args.tiny)
    line = json.dumps(result)
    print(line, flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "dynamo_regions.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
