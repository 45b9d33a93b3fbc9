"""Pure tensor code for discrete Gaussian diffusion: schedules, the forward process, parameterizations, the model's
reverse step, the training objective (losses, weighting, the VLB term) and the variational bound (bits/dim)."""

from difflab.diffusion.nll import (
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    normal_kl,
    prior_bpd,
    vlb_terms,
)
from difflab.diffusion.objective import (
    LOSSES,
    VLB_MODES,
    WEIGHTINGS,
    DiffusionObjective,
    elementwise_loss,
    loss_weight,
    timestep_quartile_means,
)
from difflab.diffusion.parameterization import PREDICTION_TYPES, target_for, to_x0_eps
from difflab.diffusion.process import GaussianDiffusion
from difflab.diffusion.reverse import VARIANCE_TYPES, ReverseProcess, split_output
from difflab.diffusion.schedules import NoiseSchedule, make_schedule

__all__ = [
    "DiffusionObjective",
    "GaussianDiffusion",
    "LOSSES",
    "NoiseSchedule",
    "PREDICTION_TYPES",
    "ReverseProcess",
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
    "split_output",
    "target_for",
    "timestep_quartile_means",
    "to_x0_eps",
    "vlb_terms",
]
