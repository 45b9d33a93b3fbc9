"""Ancestral sampling of Ho et al. 2020 (Alg. 2), on a subset of timesteps as in Nichol & Dhariwal 2021 (Sec. 4).

With selected timesteps tau_S > ... > tau_1 the step from tau_i to tau_{i-1} uses
    beta' = 1 - abar_{tau_i} / abar_{tau_{i-1}}      (abar after the last step is 1)
and draws x_prev ~ N(mu~(x0, x_t), sigma^2) with sigma^2 = beta' ("fixed_large") or
beta~' = (1 - abar_prev) / (1 - abar_t) beta' ("fixed_small"). No noise is added at the last step.

``learned_range`` (Improved DDPM, Nichol & Dhariwal 2021, eq. 15): the model outputs 2C channels on dim 1, the
prediction and then v in [-1, 1] (improved-diffusion's parameterisation), and
    log sigma^2 = frac log(beta') + (1 - frac) log(beta~'_clipped),   frac = (v + 1) / 2,
with beta' and beta~' those of the respaced chain (as improved-diffusion's SpacedDiffusion). beta~' of the last
step is 0; as in improved-diffusion it is clipped to the first nonzero value, that of the step before it (this only
fixes the log: no noise is drawn at the last step).
"""

from __future__ import annotations

import torch

from difflab.samplers.base import GeneratorLike, ModelFn, Sampler, randn_like

VARIANCE_TYPES = ("fixed_small", "fixed_large", "learned_range")


class DDPMSampler(Sampler):
    """Ancestral DDPM sampler; ``variance_type`` is ``fixed_small`` (beta-tilde), ``fixed_large`` (beta) or
    ``learned_range`` (log-interpolation between them by the model's extra C output channels)."""

    def __init__(self, schedule, steps: int | None = None, variance_type: str = "fixed_small", **kwargs) -> None:
        super().__init__(schedule, steps if steps is not None else schedule.num_timesteps, **kwargs)
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"sampler.variance_type={variance_type!r} is not known; choose one of {list(VARIANCE_TYPES)}")
        self.variance_type = variance_type

    def log_variance_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 (log beta~'_clipped, log beta') per selected step: the bounds of ``learned_range``."""
        ab_t, ab_prev = self.alpha_bars()
        beta = 1.0 - ab_t / ab_prev
        post = (1.0 - ab_prev) / (1.0 - ab_t) * beta
        if post.numel() > 1:
            post = torch.cat([post[:-1], post[-2:-1]])  # the last entry (0) takes the value of the step before it
        return post.clamp(min=1e-20).log(), beta.log()

    def _sample(self, model_fn: ModelFn, x: torch.Tensor, prediction_type: str, generator: GeneratorLike) -> torch.Tensor:
        ab_t, ab_prev = self.alpha_bars()
        min_log, max_log = self.log_variance_bounds()
        learned = self.variance_type == "learned_range"
        for i, t in enumerate(self.timesteps):
            x0, _, extra = self.predict_x0_eps(model_fn, x, t, ab_t[i], prediction_type, return_extra=True)
            if learned and extra is None:
                raise ValueError(
                    f"sampler.variance_type='learned_range' needs a model output with 2C channels on dim 1 "
                    f"(prediction, then v in [-1, 1]); got {tuple(x.shape)}, the shape of x_t. Use a backbone with "
                    f"learned variance (twice the output channels) or variance_type='fixed_small'/'fixed_large'."
                )
            beta = 1.0 - ab_t[i] / ab_prev[i]
            coef_x0 = ab_prev[i].sqrt() * beta / (1.0 - ab_t[i])
            coef_xt = (1.0 - beta).sqrt() * (1.0 - ab_prev[i]) / (1.0 - ab_t[i])
            mean = coef_x0.to(x.dtype) * x0 + coef_xt.to(x.dtype) * x
            if i == len(self.timesteps) - 1:
                x = mean
                continue
            noise = randn_like(x, generator)
            if learned:
                frac = (extra.double() + 1.0) / 2.0
                std = (0.5 * (frac * max_log[i] + (1.0 - frac) * min_log[i])).exp().to(x.dtype)
            else:
                var = beta if self.variance_type == "fixed_large" else (1.0 - ab_prev[i]) / (1.0 - ab_t[i]) * beta
                std = var.clamp(min=1e-20).sqrt().to(x.dtype)
            x = mean + std * noise
        return x
