"""ControlNet control images for every kind, through the control cache: each kind says which image a unit reads
(a source frame, the Deforum chain's warped frame, a hybrid video frame, or the unit's fixed ``image``); the
preprocessor runs here, and a rerun or resume reads its result back from the job's store."""

from __future__ import annotations

import numpy as np

from framefarm.renderers.control_cache import control_images
from framefarm.renderers.preprocessors import PreprocessSettings


def fixed_image(job, index: int, unit) -> np.ndarray | None:
    """The unit's fixed control source (its ``image`` field, fitted to the frame), or ``None``."""
    from framefarm.images import fit_cover, load_image

    if not unit.image:
        return None
    return fit_cover(load_image(unit.image, field=f"controlnet.{index}.image"), job.width, job.height)


def unit_control_images(components, index: int, unit, inputs: list[tuple[int, np.ndarray, int]],
                        store=None) -> list[np.ndarray]:
    """Unit ``index``'s control images for ``inputs`` (``(frame, image the preprocessor reads, seed)`` each), from
    ``store`` (a :class:`~framefarm.renderers.control_cache.ControlStore`) where already made."""
    settings = PreprocessSettings(threshold_a=unit.threshold_a, threshold_b=unit.threshold_b,
                                  annotators=components.annotators)
    return control_images(store, unit.preprocessor, inputs, settings=settings,
                          field=f"controlnet.{index}.preprocessor")


def control_scales(weights: tuple[float, ...], units) -> dict:
    """The pipeline arguments of the active units ``(index, unit, model)``: weights, guidance windows."""
    return dict(controlnet_conditioning_scale=[weights[i] for i, _, _ in units],
                control_guidance_start=[u.guidance_start for _, u, _ in units],
                control_guidance_end=[u.guidance_end for _, u, _ in units])
