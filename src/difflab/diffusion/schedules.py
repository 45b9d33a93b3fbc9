"""Discrete noise schedules beta_1..beta_T, computed in float64.

Index convention: ``betas[t]`` for ``t = 0..T-1`` is the paper's beta_{t+1}; ``t = 0`` is the
least noisy step. ``alphas_cumprod[t]`` is the paper's alpha-bar_{t+1}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from difflab.utils.checks import check_int

__all__ = [
    "NoiseSchedule",
    "make_schedule",
    "linear_betas",
    "cosine_betas",
    "polynomial_betas",
    "sigmoid_betas",
    "rescale_zero_terminal_snr",
    "SCHEDULES",
]


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete variance schedule and the quantities derived from it (all float64, length T)."""

    name: str
    betas: torch.Tensor
    alphas: torch.Tensor = field(init=False)
    alphas_cumprod: torch.Tensor = field(init=False)
    alphas_cumprod_prev: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64)
        if betas.ndim != 1 or betas.numel() < 2:
            raise ValueError(
                f"schedule '{self.name}': betas must be a 1-D tensor with T >= 2 entries, "
                f"got shape {tuple(betas.shape)}"
            )
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            bad = betas[~((betas > 0) & (betas < 1))]
            raise ValueError(
                f"schedule '{self.name}': every beta must lie in the open interval (0, 1); "
                f"found {bad[:3].tolist()} (min {betas.min().item():.4g}, max {betas.max().item():.4g})"
            )
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas", alphas)
        object.__setattr__(self, "alphas_cumprod", alphas_cumprod)
        object.__setattr__(self, "alphas_cumprod_prev", torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]]))

    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion steps."""
        return int(self.betas.numel())

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha-bar / (1 - alpha-bar) per step."""
        return self.alphas_cumprod / (1.0 - self.alphas_cumprod)


def _check_num_timesteps(num_timesteps: int) -> int:
    return check_int("schedule.num_timesteps", num_timesteps, 2)


def linear_betas(
    num_timesteps: int,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    rescale_to_timesteps: bool = True,
) -> torch.Tensor:
    """Linear schedule of Ho et al. 2020 (DDPM, Sec. 4): beta_t = linspace(beta_start, beta_end, T).

    With ``rescale_to_timesteps`` the endpoints are given for T=1000 and scaled by 1000/T
    (Nichol & Dhariwal 2021, improved-diffusion ``get_named_beta_schedule``), so that the
    total noise stays comparable for other T.
    """
    T = _check_num_timesteps(num_timesteps)
    scale = 1000.0 / T if rescale_to_timesteps else 1.0
    start, end = beta_start * scale, beta_end * scale
    for key, value in (("beta_start", start), ("beta_end", end)):
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"linear schedule: {key} after rescaling by 1000/T = {scale:.4g} is {value:.4g}, outside (0, 1); "
                f"use a larger schedule.num_timesteps, a smaller schedule.{key}, or schedule.rescale_to_timesteps=false"
            )
    _check_increasing("linear", beta_start, beta_end)
    return torch.linspace(start, end, T, dtype=torch.float64)


def _check_increasing(schedule: str, beta_start: float, beta_end: float) -> None:
    """Noise must grow with t (t = 0 least noisy): beta_end > beta_start."""
    if not beta_end > beta_start:
        raise ValueError(
            f"{schedule} schedule: beta_end={beta_end!r} must be greater than beta_start={beta_start!r} "
            "(betas increase with t)"
        )


def betas_from_alpha_bar(
    alpha_bar: Callable[[torch.Tensor], torch.Tensor], num_timesteps: int, max_beta: float = 0.999
) -> torch.Tensor:
    """beta_t = min(1 - alpha_bar(t/T) / alpha_bar((t-1)/T), max_beta) for a continuous alpha_bar on [0, 1]."""
    T = _check_num_timesteps(num_timesteps)
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    ab = alpha_bar(steps)
    betas = 1.0 - ab[1:] / ab[:-1]
    return betas.clamp(max=max_beta)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of Nichol & Dhariwal 2021 (Improved DDPM, eq. 17):
    alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2), betas clipped at ``max_beta``."""
    if not s > 0:
        raise ValueError(f"cosine schedule: s must be > 0, got {s!r}")
    if not 0 < max_beta < 1:
        raise ValueError(f"cosine schedule: max_beta must lie in (0, 1), got {max_beta!r}")
    return betas_from_alpha_bar(lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2, num_timesteps, max_beta)


def polynomial_betas(
    num_timesteps: int,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    power: float = 2.0,
    rescale_to_timesteps: bool = False,
) -> torch.Tensor:
    """betas = linspace(beta_start^(1/p), beta_end^(1/p), T)^p.

    ``power=1`` is the linear schedule; ``power=2`` is the "scaled linear" schedule of latent diffusion
    (diffusers ``beta_schedule="scaled_linear"`` with beta 0.00085..0.012).
    """
    T = _check_num_timesteps(num_timesteps)
    if not power > 0:
        raise ValueError(f"polynomial schedule: power must be > 0, got {power!r}")
    scale = 1000.0 / T if rescale_to_timesteps else 1.0
    start, end = beta_start * scale, beta_end * scale
    if not (0.0 <= start < 1.0 and 0.0 < end < 1.0):
        raise ValueError(
            f"polynomial schedule: beta_start={start:.4g} and beta_end={end:.4g} must lie in [0, 1) and (0, 1)"
        )
    _check_increasing("polynomial", beta_start, beta_end)
    return torch.linspace(start ** (1.0 / power), end ** (1.0 / power), T, dtype=torch.float64) ** power


def sigmoid_betas(
    num_timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
) -> torch.Tensor:
    """Sigmoid schedule of Chen 2023 ("On the importance of noise scheduling", Alg. 1):
    alpha_bar(t) = (sigmoid(end/tau) - sigmoid((t (end - start) + start)/tau))
                   / (sigmoid(end/tau) - sigmoid(start/tau)),
    so alpha_bar(0) = 1 and alpha_bar(1) = 0; betas clipped at ``max_beta``."""
    if not end > start:
        raise ValueError(f"sigmoid schedule: end must be > start, got start={start!r}, end={end!r}")
    if not tau > 0:
        raise ValueError(f"sigmoid schedule: tau must be > 0, got {tau!r}")
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))

    def alpha_bar(u: torch.Tensor) -> torch.Tensor:
        return (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)

    return betas_from_alpha_bar(alpha_bar, num_timesteps, max_beta)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023 (Alg. 1): shift and scale sqrt(alpha_bar) so the last step has zero SNR.

    The last beta becomes exactly 1; samplers must then predict v or x0 at that step.
    """
    sqrt_ab = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1.0 - alphas


SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "polynomial": polynomial_betas,
    "sigmoid": sigmoid_betas,
}


def make_schedule(
    name: str, num_timesteps: int = 1000, rescale_betas_zero_snr: bool = False, **kwargs: float
) -> NoiseSchedule:
    """Build a named schedule: ``linear``, ``cosine``, ``polynomial`` or ``sigmoid``; kwargs go to its beta function."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule.name={name!r} is not known; choose one of {sorted(SCHEDULES)}")
    try:
        betas = SCHEDULES[name](num_timesteps, **kwargs)
    except TypeError as err:
        raise ValueError(f"schedule '{name}': {err}") from None
    if rescale_betas_zero_snr:
        betas = rescale_zero_terminal_snr(betas)
        # The terminal beta is 1 by construction; keep it just inside (0, 1) so alpha-bar_T is ~0 but finite logs
        # stay defined.
        betas[-1] = min(betas[-1].item(), 1.0 - 1e-12)
    return NoiseSchedule(name=name, betas=betas)
