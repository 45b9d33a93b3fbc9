"""Pure tensor code for discrete Gaussian diffusion: schedules, the forward process, parameterizations, losses."""

from difflab.diffusion.losses import DiffusionObjective
from difflab.diffusion.parameterization import PREDICTION_TYPES, target_for, to_x0_eps
from difflab.diffusion.process import GaussianDiffusion
from difflab.diffusion.schedules import NoiseSchedule, make_schedule

__all__ = ["DiffusionObjective", "GaussianDiffusion", "NoiseSchedule", "PREDICTION_TYPES", "make_schedule", "target_for", "to_x0_eps"]
