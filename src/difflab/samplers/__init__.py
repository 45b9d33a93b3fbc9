"""Samplers with one signature: ``make_sampler(name, schedule=..., steps=...).sample(model_fn, x_T, prediction_type)``."""

from __future__ import annotations

from typing import Any

from difflab.diffusion.schedules import NoiseSchedule
from difflab.samplers.base import TIMESTEP_SPACINGS, Sampler, randn_like, select_timesteps
from difflab.samplers.ddim import DDIMSampler
from difflab.samplers.ddpm import DDPMSampler

SAMPLERS: dict[str, type[Sampler]] = {"ddpm": DDPMSampler, "ddim": DDIMSampler}

__all__ = ["SAMPLERS", "Sampler", "DDIMSampler", "DDPMSampler", "TIMESTEP_SPACINGS", "make_sampler", "randn_like", "select_timesteps"]


def make_sampler(name: str, schedule: NoiseSchedule, **kwargs: Any) -> Sampler:
    """Build the sampler called ``name`` (one of :data:`SAMPLERS`) for ``schedule``."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler.name={name!r} is not known; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name](schedule, **kwargs)
