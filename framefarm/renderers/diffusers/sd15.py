"""SD1.5 txt2img / img2img (with or without ControlNet) through diffusers' pipelines, one call per frame group.

The pipeline objects are assembled per call from the cached components (cheap: no weights move), with a fresh
scheduler, and run with ``output_type="latent"``: decoding is framefarm's (NaN / black-frame guard,
:mod:`framefarm.renderers.diffusers.vae`).
"""

from __future__ import annotations

from typing import Any


def build_pipeline(base, *, img2img: bool, controlnets: list[Any], vae, scheduler):
    """The diffusers pipeline for this call: img2img or txt2img, with a MultiControlNet when units are given."""
    from diffusers import (
        MultiControlNetModel, StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetPipeline,
        StableDiffusionImg2ImgPipeline, StableDiffusionPipeline,
    )

    parts = dict(vae=vae, text_encoder=base.components["text_encoder"], tokenizer=base.components["tokenizer"],
                 unet=base.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                 requires_safety_checker=False)
    return assemble(parts, controlnets, img2img=img2img, multi=MultiControlNetModel,
                    classes=(StableDiffusionPipeline, StableDiffusionImg2ImgPipeline,
                             StableDiffusionControlNetPipeline, StableDiffusionControlNetImg2ImgPipeline))


def assemble(parts: dict[str, Any], controlnets: list[Any], *, img2img: bool, multi, classes: tuple) -> Any:
    """One of a family's four pipeline classes ``(txt2img, img2img, controlnet, controlnet img2img)`` over ``parts``,
    with the ControlNets wrapped in ``multi`` (diffusers' MultiControlNetModel); shared by SD1.5 and SDXL."""
    txt2img_cls, img2img_cls, controlnet_cls, controlnet_img2img_cls = classes
    if controlnets:
        cls = controlnet_img2img_cls if img2img else controlnet_cls
        pipe = cls(controlnet=multi(controlnets), **parts)
    else:
        pipe = (img2img_cls if img2img else txt2img_cls)(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def conditioning_kwargs(positives: list[Any], negatives: list[Any]) -> dict[str, Any]:
    """Prompt embeddings as the pipeline takes them (batch along dim 0)."""
    import torch

    return {
        "prompt_embeds": torch.cat([c.embeds for c in positives]),
        "negative_prompt_embeds": torch.cat([c.embeds for c in negatives]),
    }
