"""DDIM of Song et al. 2021 (eq. 12), with stochasticity eta (eq. 16):

    x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
    sigma  = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).

eta = 0 is the deterministic sampler (an Euler step of the probability-flow ODE in its own variables);
eta = 1 matches DDPM's fixed-small variance. abar after the last step is 1 (diffusers' set_alpha_to_one).
"""

from __future__ import annotations

import torch

from difflab.samplers.base import GeneratorLike, ModelFn, Sampler, StepCallback, randn_like
from difflab.utils.checks import check_number


class DDIMSampler(Sampler):
    """DDIM sampler with ``eta`` >= 0 and any ``timestep_spacing``."""

    def __init__(self, schedule, steps: int = 50, eta: float = 0.0, **kwargs) -> None:
        super().__init__(schedule, steps, **kwargs)
        check_number("sampler.eta", eta, 0.0)
        self.eta = float(eta)

    def _sample(
        self,
        model_fn: ModelFn,
        x: torch.Tensor,
        prediction_type: str,
        generator: GeneratorLike,
        callback: StepCallback | None,
    ) -> torch.Tensor:
        ab_t, ab_prev = self.alpha_bars()
        for i, t in enumerate(self.timesteps):
            x0, eps = self.predict_x0_eps(model_fn, x, t, ab_t[i], prediction_type)
            sigma = self.eta * ((1.0 - ab_prev[i]) / (1.0 - ab_t[i]) * (1.0 - ab_t[i] / ab_prev[i])).sqrt()
            direction = (1.0 - ab_prev[i] - sigma**2).clamp(min=0.0).sqrt()
            x = ab_prev[i].sqrt().to(x.dtype) * x0 + direction.to(x.dtype) * eps
            if sigma > 0:
                x = x + sigma.to(x.dtype) * randn_like(x, generator)
            if callback is not None:
                callback(i + 1, int(t), x, x0)
        return x
