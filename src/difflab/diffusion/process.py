"""The discrete Gaussian diffusion process of Ho et al. 2020 (DDPM).

Forward marginal (eq. 4):   q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
Posterior (eqs. 6-7):       q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) with
    mu~_t   = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
    beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t
All coefficients are computed in float64 from the schedule and cast to the data's dtype where used.
"""

from __future__ import annotations

import torch

from difflab.diffusion.parameterization import broadcast_to
from difflab.diffusion.schedules import NoiseSchedule

__all__ = ["GaussianDiffusion"]


class GaussianDiffusion:
    """Closed-form quantities of the forward process for one :class:`NoiseSchedule`."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule
        ab, ab_prev, betas = schedule.alphas_cumprod, schedule.alphas_cumprod_prev, schedule.betas
        self.posterior_variance = betas * (1.0 - ab_prev) / (1.0 - ab)
        # beta~_0 = 0; improved-diffusion clips the log at beta~_1 so it stays finite.
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        self.posterior_mean_coef_x0 = betas * ab_prev.sqrt() / (1.0 - ab)
        self.posterior_mean_coef_xt = (1.0 - ab_prev) * schedule.alphas.sqrt() / (1.0 - ab)

    @property
    def num_timesteps(self) -> int:
        """T."""
        return self.schedule.num_timesteps

    @staticmethod
    def gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] reshaped to broadcast against ``like`` and cast to its dtype and device."""
        out = values.to(t.device)[t]
        return broadcast_to(out, like).to(like.dtype)

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

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = self.gather(self.posterior_mean_coef_x0, t, x_t) * x0 + self.gather(self.posterior_mean_coef_xt, t, x_t) * x_t
        var = self.gather(self.posterior_variance, t, x_t)
        log_var = self.gather(self.posterior_log_variance_clipped, t, x_t)
        return mean, var, log_var
