"""Per-timestep loss weights.

Min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", Sec. 3.4): measured
as an error in x0, the loss at a timestep with signal-to-noise ratio SNR = abar / (1 - abar) gets the weight
min(SNR, gamma). The same weighting expressed for the other targets follows from the exact relations between
their errors at a fixed x_t (a = sqrt(abar), s = sqrt(1 - abar)):

    x0 error  = -(s / a) eps error,   so ||x0 err||^2 = ||eps err||^2 / SNR
    v  error  =  eps error / a,       so ||v err||^2  = ||eps err||^2 (SNR + 1) / SNR

which gives

    eps:  w = min(SNR, gamma) / SNR      (= min(1, gamma / SNR), the form used here: finite at SNR = 0)
    x0:   w = min(SNR, gamma)
    v:    w = min(SNR, gamma) / (SNR + 1)

and w_eps ||eps err||^2 = w_x0 ||x0 err||^2 = w_v ||v err||^2 for the same prediction.
"""

from __future__ import annotations

import torch

from difflab.diffusion.parameterization import check_prediction_type

__all__ = ["WEIGHTINGS", "check_weighting", "loss_weight"]

WEIGHTINGS = ("uniform", "min_snr")


def check_weighting(weighting: str, gamma: float = 5.0) -> str:
    """Return ``weighting`` or raise a ValueError naming the accepted values; gamma must be > 0."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"objective.weighting={weighting!r} is not known; choose one of {list(WEIGHTINGS)}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
        raise ValueError(f"objective.min_snr_gamma={gamma!r} must be a number > 0")
    return weighting


def loss_weight(snr: torch.Tensor, prediction_type: str, weighting: str = "uniform", gamma: float = 5.0) -> torch.Tensor:
    """The loss weight at signal-to-noise ratio ``snr`` (any shape, computed in float64) for a network predicting
    ``prediction_type``: 1 for ``uniform``, the Min-SNR-gamma weight above for ``min_snr``."""
    check_prediction_type(prediction_type)
    check_weighting(weighting, gamma)
    snr = torch.as_tensor(snr, dtype=torch.float64)
    if weighting == "uniform":
        return torch.ones_like(snr)
    if prediction_type == "eps":
        return (gamma / snr).clamp(max=1.0)
    clipped = snr.clamp(max=gamma)
    if prediction_type == "x0":
        return clipped
    return clipped / (snr + 1.0)
