"""A1111 sampler names → diffusers schedulers.

A1111 (k-diffusion) and diffusers implement the same samplers in different code, so a given seed does not give
A1111's exact pixels; the algorithm, its noise schedule (Karras sigmas or not) and its stochasticity match. The
table is data, documented in ``docs/models.md``; an unknown name is an error listing the known ones (no guessing).

Stochastic samplers (``Euler a``, ``DPM2 a``, the SDE ones, ``LCM``) draw fresh noise at every step from the frame's
own generator, so they stay seed-locked per frame whatever the batch.

This module imports no torch or diffusers at import time: job validation uses :data:`SAMPLER_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from framefarm.errors import InputError


@dataclass(frozen=True)
class Sampler:
    """One A1111 sampler: the diffusers scheduler class and the config overrides that make it that sampler."""

    name: str
    scheduler: str
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""


_KARRAS = {"use_karras_sigmas": True}
SAMPLERS: tuple[Sampler, ...] = (
    Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
    Sampler("Euler", "EulerDiscreteScheduler"),
    Sampler("LMS", "LMSDiscreteScheduler"),
    Sampler("LMS Karras", "LMSDiscreteScheduler", _KARRAS),
    Sampler("Heun", "HeunDiscreteScheduler"),
    Sampler("DPM2", "KDPM2DiscreteScheduler"),
    Sampler("DPM2 Karras", "KDPM2DiscreteScheduler", _KARRAS),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler"),
    Sampler("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", _KARRAS),
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2, **_KARRAS}),
    Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    Sampler("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, **_KARRAS}),
    Sampler("DPM++ SDE", "DPMSolverSinglestepScheduler", {},
            "diffusers' single-step DPM-Solver++; A1111's Brownian-tree noise (torchsde) is not used"),
    Sampler("DPM++ SDE Karras", "DPMSolverSinglestepScheduler", _KARRAS,
            "as DPM++ SDE, with Karras sigmas"),
    Sampler("DDIM", "DDIMScheduler", {"set_alpha_to_one": False}),
    Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    Sampler("UniPC", "UniPCMultistepScheduler"),
    Sampler("DEIS", "DEISMultistepScheduler"),
    Sampler("LCM", "LCMScheduler", {}, "for LCM-distilled models or an LCM LoRA: 4-8 steps, CFG 1-2"),
)
SAMPLER_NAMES: tuple[str, ...] = tuple(s.name for s in SAMPLERS)
_BY_KEY = {" ".join(s.name.lower().split()): s for s in SAMPLERS}


def find_sampler(name: str, *, field: str = "model.sampler") -> Sampler:
    """The sampler for an A1111 name (case and extra spaces ignored); an unknown name is an InputError."""
    found = _BY_KEY.get(" ".join(str(name).lower().split()))
    if found is None:
        raise InputError(field, name, "is not a sampler framefarm knows", f"Use one of: {', '.join(SAMPLER_NAMES)}")
    return found


def make_scheduler(name: str, base_config: dict[str, Any]):
    """A fresh scheduler for one render call (schedulers keep per-run state, so never share one across calls)."""
    import diffusers

    sampler = find_sampler(name)
    cls = getattr(diffusers, sampler.scheduler)  # names come from the SAMPLERS table above, never from user text
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    config.update(sampler.overrides)
    return cls.from_config(config)
