"""SDXL txt2img / img2img (with or without ControlNet) through diffusers' pipelines, one call per frame group.

As :mod:`framefarm.renderers.diffusers.sd15`, plus SDXL's pooled text embedding and size conditioning (original and
target size = the frame's size, no crop). The invisible watermark diffusers adds when its package is installed is
switched off: it would change frame pixels depending on what is installed on a worker.
"""

from __future__ import annotations

from typing import Any

from framefarm.renderers.diffusers.sd15 import assemble


def build_pipeline(base, *, img2img: bool, controlnets: list[Any], vae, scheduler):
    from diffusers import (
        MultiControlNetModel, StableDiffusionXLControlNetImg2ImgPipeline, StableDiffusionXLControlNetPipeline,
        StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline,
    )

    c = base.components
    parts = dict(vae=vae, text_encoder=c["text_encoder"], text_encoder_2=c["text_encoder_2"],
                 tokenizer=c["tokenizer"], tokenizer_2=c["tokenizer_2"], unet=base.unet, scheduler=scheduler,
                 add_watermarker=False)
    if img2img:
        parts["requires_aesthetics_score"] = False
    return assemble(parts, controlnets, img2img=img2img, multi=MultiControlNetModel,
                    classes=(StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline,
                             StableDiffusionXLControlNetPipeline, StableDiffusionXLControlNetImg2ImgPipeline))


def conditioning_kwargs(positives: list[Any], negatives: list[Any]) -> dict[str, Any]:
    import torch

    return {
        "prompt_embeds": torch.cat([c.embeds for c in positives]),
        "negative_prompt_embeds": torch.cat([c.embeds for c in negatives]),
        "pooled_prompt_embeds": torch.cat([c.pooled for c in positives]),
        "negative_pooled_prompt_embeds": torch.cat([c.pooled for c in negatives]),
    }
