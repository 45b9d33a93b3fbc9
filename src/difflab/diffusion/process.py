"""The discrete Gaussian diffusion process of Ho et al. 2020 (DDPM).

Forward marginal (eq. 4):   q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
Posterior (eqs. 6-7):       q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) with
    mu~_t   = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
    beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t
All coefficients are computed in float64 from the schedule and cast to the data's dtype where used. The posterior
(and the model's reverse step built on it) is ``reverse.ReverseProcess`` over all T steps: ``self.reverse``.
"""

from __future__ import annotations

import torch

from difflab.diffusion.reverse import ReverseProcess, gather
from difflab.diffusion.schedules import NoiseSchedule

__all__ = ["GaussianDiffusion"]


class GaussianDiffusion:
    """Closed-form quantities of the forward process for one :class:`NoiseSchedule`."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule
        # The posterior q(x_{t-1} | x_t, x0) and the model's reverse step over all T steps (see reverse.py).
        self.reverse = ReverseProcess(schedule.alphas_cumprod, schedule.betas)

    @property
    def num_timesteps(self) -> int:
        """T."""
        return self.schedule.num_timesteps

    @staticmethod
    def gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] reshaped to broadcast against ``like`` and cast to its dtype, on t's device."""
        return gather(values, t, like)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha-bar at integer timesteps ``t`` (float64, on t's device)."""
        return self.schedule.alphas_cumprod.to(t.device)[t]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""
        if noise is None:
            noise = torch.randn_like(x0)
        ab = self.schedule.alphas_cumprod
        return self.gather(ab.sqrt(), t, x0) * x0 + self.gather((1.0 - ab).sqrt(), t, x0) * noise

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_t | x_0)."""
        ab = self.schedule.alphas_cumprod
        return self.gather(ab.sqrt(), t, x0) * x0, self.gather(1.0 - ab, t, x0).expand_as(x0)

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (beta~_0 = 0: its log is beta~_1's)."""
        return self.reverse.q_posterior(x0, x_t, t)
