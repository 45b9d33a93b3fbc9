"""Ancestral sampling of Ho et al. 2020 (Alg. 2), on a subset of timesteps as in Nichol & Dhariwal 2021 (Sec. 4).

With selected timesteps tau_S > ... > tau_1 the step from tau_i to tau_{i-1} uses
    beta' = 1 - abar_{tau_i} / abar_{tau_{i-1}}      (abar after the last step is 1)
and draws x_prev ~ N(mu~(x0, x_t), sigma^2) with sigma^2 = beta' ("fixed_large") or
beta~' = (1 - abar_prev) / (1 - abar_t) beta' ("fixed_small"). No noise is added at the last step.
"""

from __future__ import annotations

import torch

from difflab.samplers.base import GeneratorLike, ModelFn, Sampler, randn_like

VARIANCE_TYPES = ("fixed_small", "fixed_large")


class DDPMSampler(Sampler):
    """Ancestral DDPM sampler; ``variance_type`` is ``fixed_small`` (beta-tilde) or ``fixed_large`` (beta)."""

    def __init__(self, schedule, steps: int | None = None, variance_type: str = "fixed_small", **kwargs) -> None:
        super().__init__(schedule, steps if steps is not None else schedule.num_timesteps, **kwargs)
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"sampler.variance_type={variance_type!r} is not known; choose one of {list(VARIANCE_TYPES)}")
        self.variance_type = variance_type

    def _sample(self, model_fn: ModelFn, x: torch.Tensor, prediction_type: str, generator: GeneratorLike) -> torch.Tensor:
        ab_t, ab_prev = self.alpha_bars()
        for i, t in enumerate(self.timesteps):
            x0, _ = self.predict_x0_eps(model_fn, x, t, ab_t[i], prediction_type)
            beta = 1.0 - ab_t[i] / ab_prev[i]
            coef_x0 = ab_prev[i].sqrt() * beta / (1.0 - ab_t[i])
            coef_xt = (1.0 - beta).sqrt() * (1.0 - ab_prev[i]) / (1.0 - ab_t[i])
            mean = coef_x0.to(x.dtype) * x0 + coef_xt.to(x.dtype) * x
            if i == len(self.timesteps) - 1:
                x = mean
                continue
            var = beta if self.variance_type == "fixed_large" else (1.0 - ab_prev[i]) / (1.0 - ab_t[i]) * beta
            x = mean + var.clamp(min=1e-20).sqrt().to(x.dtype) * randn_like(x, generator)
        return x
