"""The renderer contract: every job kind of the diffusers backend (video2video, the Deforum chain, AnimateDiff) goes
through the same checks on the tiny models, with the same code users run.

* a ``<lora:…>`` tag changes the pixels, and gives the same pixels with the default speed levers as with none (the
  fused attention projections must follow the LoRA-patched weights);
* a ``<hypernet:…>`` tag changes the pixels (applied, never silently dropped);
* a job without networks rendered after one with them, in the same process, equals a fresh render of it (patches
  never leak from one job into the next);
* ControlNet units act in every kind;
* every sampler of the A1111 table gives the txt2img frame diffusers' own ``StableDiffusionPipeline`` gives for the
  same model, seed and scheduler config (≤ 1/255).
"""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest

from framefarm.renderers.accel import ACCEL_ENV, PIXEL_TOLERANCE
from framefarm.renderers.models.loader import clear_cache
from tests.renderers.test_hypernetwork import write_hypernetwork

KINDS = ("video2video", "deforum", "animatediff")
PROMPT = "a watercolor cat"
HYPER_OPT_IN = "model.allow_pickle=true"  # hypernetwork files are pickles: opt-in only


@pytest.fixture(scope="module")
def contract_models(tiny_library, motion_models, tmp_path_factory) -> dict[str, str]:
    """The tiny models folder with a hypernetwork and a motion module, and a control image file."""
    from framefarm.images import encode_png
    from framefarm.renderers.testcard import source_testcard

    folder = tiny_library.root / "models" / "hypernetworks"
    if not (folder / "tinyhyper.pt").exists():
        write_hypernetwork(folder / "tinyhyper.pt")
    control = tmp_path_factory.mktemp("contract") / "control.png"
    control.write_bytes(encode_png(source_testcard(3, 64, 64, 8)))
    return {"models_dir": str(tiny_library.root), "control": str(control)}


def job_for(kind: str, models: dict[str, str], prompt: str = PROMPT, *extra: str, controlnet: bool = False):
    """A small job of ``kind`` on the tiny models (64×64, 2 steps); ``extra`` are ``--set`` overrides."""
    from framefarm.job import apply_override, parse_override, validate_job
    from tests.renderers.animatediff.conftest import ad_job
    from tests.renderers.jobs import v2v_job

    unit = f'controlnet=[{{model="tiny-canny", preprocessor="canny", weight=1.5, image="{models["control"]}"}}]'
    units = [unit] if controlnet else ["controlnet=[]"]
    if kind == "video2video":
        return v2v_job(models["models_dir"], f'prompts.0="{prompt}"', *units, *extra, frames=4, controlnet=False)
    if kind == "animatediff":
        return ad_job(models["models_dir"], f'prompts.0="{prompt}"', *units, *extra, frames=8)
    data = dict(kind="deforum", name="contract", width=64, height=64, frames=3, fps=8, seed=3, prompts={"0": prompt},
                model=dict(models_dir=models["models_dir"], checkpoint="tiny-sd15", steps=2, sampler="Euler"),
                motion={"zoom": "0:(1.05)", "strength": "0:(0.6)"},
                # Colour matching (a histogram lookup after diffusion) can turn one level of rounding into several;
                # the contract is about the diffusion core, so the chain here is diffusion and warp only.
                color_coherence={"mode": "None"})
    for assignment in (*units, *extra):  # the CLI's --set grammar
        data = apply_override(data, *parse_override(assignment))
    return validate_job(data)


def render_kind(job, *, previous: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """Every frame of ``job`` through the diffusers backend, chunk by chunk, as a render process does.

    ``previous``: a Deforum chain renders each frame alone from these stored frames (as a resumed render does), so
    a comparison measures one step of the chain, not a one-level difference amplified along it.
    """
    from framefarm.animation.plan import plan_job
    from framefarm.renderers import get_renderer
    from framefarm.renderers.base import RenderContext
    from framefarm.renderers.diffusers.kinds.animatediff.renderer import clear_segment_cache
    from framefarm.renderers.testcard import source_testcard

    clear_segment_cache()  # a clip is denoised once per process: these tests compare fresh renders
    renderer = get_renderer("diffusers")
    frames: dict[int, np.ndarray] = {}
    context = RenderContext.for_job(job, previous_frame=frames.__getitem__,
                                    source_frame=lambda i: source_testcard(i, job.width, job.height, job.fps))
    if previous is not None:
        context = dataclasses.replace(context, previous_frame=previous.__getitem__)
    for chunk in plan_job(job, renderer=renderer.id).chunks:
        for part in ([[f] for f in chunk.frames] if previous is not None else [list(chunk.frames)]):
            frames.update(renderer.render(chunk, part, context))
    assert sorted(frames) == list(range(job.frames))
    return frames


def max_diff(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> int:
    return max(int(np.abs(a[i].astype(int) - b[i].astype(int)).max()) for i in a)


def mean_diff(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> float:
    return float(np.mean([np.abs(a[i].astype(float) - b[i].astype(float)).mean() for i in a]))


def fresh(monkeypatch, levers: str | None, job, previous=None) -> dict[int, np.ndarray]:
    """``job`` from freshly loaded models with ``$FRAMEFARM_ACCEL`` = ``levers`` (None: the defaults)."""
    clear_cache()  # levers are applied once per loaded model
    if levers is None:
        monkeypatch.delenv(ACCEL_ENV, raising=False)
    else:
        monkeypatch.setenv(ACCEL_ENV, levers)
    try:
        return render_kind(job, previous=previous)
    finally:
        clear_cache()
        monkeypatch.delenv(ACCEL_ENV, raising=False)


@pytest.mark.parametrize("kind", KINDS)
def test_a_lora_changes_pixels_and_renders_alike_with_the_default_levers_and_none(kind, contract_models,
                                                                                 monkeypatch):
    """With the fused projections stale the LoRA was missing from every Deforum frame (255/255 apart). A chain on
    random tiny weights amplifies even a one-level rounding difference frame after frame (the same happens without
    any LoRA), so the chain is compared step by step: each frame from the same stored previous frame."""
    lora_job = job_for(kind, contract_models, f"{PROMPT} <lora:tinylora:1.0>")
    plain = fresh(monkeypatch, None, job_for(kind, contract_models))
    unfused = fresh(monkeypatch, "none", lora_job)
    fast = fresh(monkeypatch, None, lora_job, previous=unfused if kind == "deforum" else None)
    print(f"{kind}: LoRA moves pixels by mean {mean_diff(plain, fast):.1f}; default levers vs none: max "
          f"{max_diff(fast, unfused)}")
    assert mean_diff(plain, fast) > 2.0
    assert max_diff(fast, unfused) <= PIXEL_TOLERANCE


@pytest.mark.parametrize("kind", KINDS)
def test_a_hypernetwork_is_applied_and_patches_never_leak_into_the_next_job(kind, contract_models):
    clear_cache()
    plain_job = job_for(kind, contract_models, PROMPT, HYPER_OPT_IN)
    first = render_kind(plain_job)
    patched = render_kind(job_for(kind, contract_models, f"{PROMPT} <hypernet:tinyhyper:1.0> <lora:tinylora:0.8>",
                                  HYPER_OPT_IN))
    hyper_only = render_kind(job_for(kind, contract_models, f"{PROMPT} <hypernet:tinyhyper:1.0>", HYPER_OPT_IN))
    after = render_kind(plain_job)  # same process, same cached models, after two patched jobs
    print(f"{kind}: hypernetwork moves pixels by mean {mean_diff(first, hyper_only):.1f}")
    assert mean_diff(first, hyper_only) > 1.0 and mean_diff(hyper_only, patched) > 1.0
    assert all(np.array_equal(first[i], after[i]) for i in first)


@pytest.mark.parametrize("kind", KINDS)
def test_controlnet_units_act_in_every_kind(kind, contract_models):
    plain = render_kind(job_for(kind, contract_models))
    guided = render_kind(job_for(kind, contract_models, controlnet=True))
    print(f"{kind}: ControlNet moves pixels by mean {mean_diff(plain, guided):.1f}")
    assert mean_diff(plain, guided) > 1.0


def test_a_tag_naming_no_file_is_an_input_error_in_every_kind(contract_models):
    from framefarm.errors import InputError

    for kind in KINDS:
        with pytest.raises(InputError, match="prompts <lora:…>.*nosuchlora"):
            render_kind(job_for(kind, contract_models, f"{PROMPT} <lora:nosuchlora:1>"))


def test_animatediff_refuses_frames_with_different_networks(contract_models):
    from framefarm.errors import InputError

    job = job_for("animatediff", contract_models, f"{PROMPT} <lora:tinylora:1>", 'prompts.4="a dog"')
    with pytest.raises(InputError, match=r"prompts: names other LoRA/hypernetwork tags \(none\) than frame 0 \(<lora:tinylora:1>\).*got .frame 4.*same <lora"):
        render_kind(job)


# ---------------------------------------------------------------------------------------------------------------
# Parity with diffusers' own pipeline


@pytest.fixture(scope="module")
def reference_pipeline(tiny_library):
    """diffusers' ``StableDiffusionPipeline`` over the diffusers-folder copy of the tiny SD1.5 checkpoint."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_library.sd15_diffusers), torch_dtype=torch.float32,
                                                   safety_checker=None, requires_safety_checker=False,
                                                   local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe, dict(pipe.scheduler.config)  # the folder's own scheduler config, before any sampler's overrides


def _sampler_names():
    from framefarm.renderers.samplers import SAMPLER_NAMES

    return SAMPLER_NAMES


@pytest.mark.parametrize("sampler", _sampler_names())
def test_every_sampler_gives_diffusers_own_txt2img_frame(sampler, models_dir, reference_pipeline, monkeypatch):
    """framefarm's group call (prompt encoding, scheduler from the table, seeded noise, sliced VAE decode) against
    diffusers' own pipeline. With the speed levers off the two agree exactly (measured: 0 for every sampler); the
    levers' own rounding (≤ 1 level) is what tests/renderers/test_accel.py bounds — on random tiny weights a
    high-order sampler (DEIS, 4 steps) can amplify it to ~17 levels, so it is not part of this comparison."""
    import diffusers
    import torch

    from framefarm.renderers.diffusers.denoise import FrameSettings, Group
    from framefarm.renderers.samplers import find_sampler
    from tests.renderers.jobs import group_frame, v2v_job

    seed, steps, cfg = 1234, 4, 6.0
    # Both sides read the same diffusers folder: the same weights and the same scheduler config.
    job = v2v_job(models_dir, f'model.sampler="{sampler}"', frames=1, controlnet=False,
                  checkpoint="tiny-sd15-diffusers")
    group = Group(frames=[0], seeds=[seed], positives=[PROMPT], negatives=[""],
                  settings=FrameSettings(strength=1.0, cfg=cfg, steps=steps, sampler=sampler, clip_skip=1))
    ours = group_frame(monkeypatch, job, group)

    spec = find_sampler(sampler)
    pipe, config = reference_pipeline
    pipe.scheduler = getattr(diffusers, spec.scheduler).from_config(config, **spec.overrides)
    image = pipe(PROMPT, negative_prompt="", height=64, width=64, num_inference_steps=steps, guidance_scale=cfg,
                 generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images[0]
    theirs = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    diff = int(np.abs(ours.astype(int) - theirs.astype(int)).max())
    print(f"{sampler}: max |framefarm − StableDiffusionPipeline| = {diff}")
    assert ours.shape == theirs.shape == (64, 64, 3)
    assert diff <= PIXEL_TOLERANCE


def test_the_packaged_sd15_scheduler_config_is_the_one_sd15_folders_ship(tiny_library, reference_pipeline):
    """A single-file checkpoint takes its scheduler config from framefarm's packaged copy: the same as the folder's
    (so the sampler parity above holds for single files too)."""
    from framefarm.renderers.models.library import open_library
    from framefarm.renderers.models.loader import load_base

    base = load_base(open_library(str(tiny_library.root)).find("checkpoint", "tiny-sd15", field="model.checkpoint"))
    _, folder = reference_pipeline
    keys = ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "steps_offset", "timestep_spacing",
            "prediction_type", "set_alpha_to_one", "skip_prk_steps", "clip_sample")
    assert {k: base.scheduler_config.get(k) for k in keys} == {k: folder.get(k) for k in keys}

