"""Exact conversions between what a network predicts (eps, x0 or v) and the quantities samplers need.

With a_t = sqrt(alpha_bar_t), s_t = sqrt(1 - alpha_bar_t) and x_t = a_t x0 + s_t eps:
    x0  = (x_t - s_t eps) / a_t
    eps = (x_t - a_t x0) / s_t
    v   = a_t eps - s_t x0            (Salimans & Ho 2022, eq. 9)
    x0  = a_t x_t - s_t v,   eps = s_t x_t + a_t v
"""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("eps", "x0", "v")

__all__ = ["PREDICTION_TYPES", "check_prediction_type", "to_x0_eps", "target_for", "broadcast_to"]


def check_prediction_type(prediction_type: str) -> str:
    """Return ``prediction_type`` or raise a ValueError naming the accepted values."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"objective.prediction_type={prediction_type!r} is not known; choose one of {list(PREDICTION_TYPES)}"
        )
    return prediction_type


def broadcast_to(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample coefficient of shape [B] to broadcast against ``x`` of shape [B, ...]."""
    return coef.reshape(coef.shape[0], *([1] * (x.ndim - 1)))


def to_x0_eps(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) implied by a network ``output`` of the given ``prediction_type``; ``alpha_bar`` has shape [B].

    Arithmetic is done in float64 and cast back to ``x_t``'s dtype.
    """
    check_prediction_type(prediction_type)
    dtype = x_t.dtype
    ab = broadcast_to(alpha_bar.to(device=x_t.device, dtype=torch.float64), x_t)
    a, s = ab.sqrt(), (1.0 - ab).sqrt()
    out, xt = output.double(), x_t.double()
    if prediction_type == "eps":
        eps = out
        x0 = (xt - s * eps) / a
    elif prediction_type == "x0":
        x0 = out
        eps = (xt - a * x0) / s
    else:
        x0 = a * xt - s * out
        eps = s * xt + a * out
    return x0.to(dtype), eps.to(dtype)


def target_for(prediction_type: str, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The regression target for ``prediction_type`` given clean data, noise and alpha_bar of shape [B]."""
    check_prediction_type(prediction_type)
    if prediction_type == "eps":
        return eps
    if prediction_type == "x0":
        return x0
    ab = broadcast_to(alpha_bar.to(device=x0.device, dtype=torch.float64), x0)
    return (ab.sqrt() * eps.double() - (1.0 - ab).sqrt() * x0.double()).to(x0.dtype)
