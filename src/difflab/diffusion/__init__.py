"""Pure tensor code for discrete Gaussian diffusion: schedules, the forward process, parameterizations, losses,
loss weighting and the variational bound (bits/dim)."""

from difflab.diffusion.losses import LOSSES, VLB_MODES, DiffusionObjective, elementwise_loss
from difflab.diffusion.nll import (
    VARIANCE_TYPES,
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    normal_kl,
    prior_bpd,
    vlb_terms,
)
from difflab.diffusion.parameterization import PREDICTION_TYPES, target_for, to_x0_eps
from difflab.diffusion.process import GaussianDiffusion
from difflab.diffusion.schedules import NoiseSchedule, make_schedule
from difflab.diffusion.weighting import WEIGHTINGS, loss_weight

__all__ = [
    "DiffusionObjective",
    "GaussianDiffusion",
    "LOSSES",
    "NoiseSchedule",
    "PREDICTION_TYPES",
    "VARIANCE_TYPES",
    "VLB_MODES",
    "WEIGHTINGS",
    "bits_per_dim",
    "discretized_gaussian_log_likelihood",
    "elementwise_loss",
    "loss_weight",
    "make_schedule",
    "normal_kl",
    "prior_bpd",
    "target_for",
    "to_x0_eps",
    "vlb_terms",
]
