"""Samplers with one signature: ``make_sampler(name, schedule=..., steps=...).sample(model_fn, x_T, prediction_type)``.

ddpm          Ho et al. 2020 ancestral sampling (fixed_small | fixed_large | learned_range variance)
ddim          Song et al. 2021 (eta >= 0)
dpmpp_2m      Lu et al. 2022, DPM-Solver++(2M)
dpmpp_3m      Lu et al. 2022, DPM-Solver++(3M) (third-order multistep)
dpmpp_2m_sde  Lu et al. 2022, DPM-Solver++(2M) SDE (stochastic, noise scale eta)
dpmpp_3m_sde  Lu et al. 2022, DPM-Solver++(3M) SDE (stochastic, noise scale eta)
unipc         Zhao et al. 2023, UniPC (bh2, order 2: DPM-Solver++(2M) steps with the UniC corrector)
euler         Karras et al. 2022, Euler (Alg. 2 without the correction; optional churn)
heun          Karras et al. 2022, Heun (Alg. 1 / Alg. 2)
"""

from __future__ import annotations

import inspect
from typing import Any

from difflab.diffusion.schedules import NoiseSchedule
from difflab.samplers.base import TIMESTEP_SPACINGS, Sampler, dynamic_threshold, randn_like, select_timesteps
from difflab.samplers.ddim import DDIMSampler
from difflab.samplers.ddpm import DDPMSampler
from difflab.samplers.dpm_solver import (
    DPMSolverPP2MSampler,
    DPMSolverPP2MSDESampler,
    DPMSolverPP3MSampler,
    DPMSolverPP3MSDESampler,
)
from difflab.samplers.karras import EulerSampler, HeunSampler
from difflab.samplers.multistep import MULTISTEP_SPACINGS
from difflab.samplers.unipc import UniPCSampler

SAMPLERS: dict[str, type[Sampler]] = {
    "ddpm": DDPMSampler,
    "ddim": DDIMSampler,
    "dpmpp_2m": DPMSolverPP2MSampler,
    "dpmpp_3m": DPMSolverPP3MSampler,
    "dpmpp_2m_sde": DPMSolverPP2MSDESampler,
    "dpmpp_3m_sde": DPMSolverPP3MSDESampler,
    "unipc": UniPCSampler,
    "euler": EulerSampler,
    "heun": HeunSampler,
}

__all__ = [
    "SAMPLERS",
    "Sampler",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverPP2MSampler",
    "DPMSolverPP2MSDESampler",
    "DPMSolverPP3MSampler",
    "DPMSolverPP3MSDESampler",
    "EulerSampler",
    "HeunSampler",
    "MULTISTEP_SPACINGS",
    "TIMESTEP_SPACINGS",
    "UniPCSampler",
    "dynamic_threshold",
    "make_sampler",
    "randn_like",
    "sampler_defaults",
    "select_timesteps",
]


def make_sampler(name: str, schedule: NoiseSchedule, **kwargs: Any) -> Sampler:
    """Build the sampler called ``name`` (one of :data:`SAMPLERS`) for ``schedule``.

    Unknown options are a ValueError naming the option and the sampler (not a bare TypeError).
    """
    if name not in SAMPLERS:
        raise ValueError(f"sampler.name={name!r} is not known; choose one of {sorted(SAMPLERS)}")
    try:
        return SAMPLERS[name](schedule, **kwargs)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            bad = str(err).split("unexpected keyword argument")[-1].strip().strip("'\"")
            raise ValueError(f"sampler option {bad!r} is not known for sampler.name={name!r}") from None
        raise


def sampler_defaults(name: str) -> dict[str, Any]:
    """Every option of sampler ``name`` (besides ``schedule``) with its constructor default, read from the class and
    its bases (the most derived default wins), e.g. ``{"steps": 50, "eta": 0.0, "timestep_spacing": "leading", ...}``
    for ``ddim``. An option without a default maps to ``inspect.Parameter.empty``."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler.name={name!r} is not known; choose one of {sorted(SAMPLERS)}")
    defaults: dict[str, Any] = {}
    for cls in SAMPLERS[name].__mro__:
        if "__init__" not in vars(cls) or not issubclass(cls, Sampler):
            continue
        for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:  # [0] is self
            if parameter.name == "schedule" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if defaults.get(parameter.name, inspect.Parameter.empty) is inspect.Parameter.empty:
                defaults[parameter.name] = parameter.default
    return defaults
