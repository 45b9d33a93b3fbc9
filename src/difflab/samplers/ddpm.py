"""Ancestral sampling of Ho et al. 2020 (Alg. 2), on a subset of timesteps as in Nichol & Dhariwal 2021 (Sec. 4).

The selected timesteps tau_S > ... > tau_1 form a respaced chain: the step from tau_i to tau_{i-1} uses
    beta' = 1 - abar_{tau_i} / abar_{tau_{i-1}}      (abar after the last step is 1)
and draws x_prev ~ N(mu~'(x0, x_t), sigma^2), the model's reverse step of ``difflab.diffusion.reverse`` on that
chain (its posterior mean at the predicted x0, and the variance fixed_small beta~', fixed_large beta' or the
learned_range interpolation between their logs by the model's extra C output channels v, improved-diffusion's
parameterisation). beta~' of the last step is 0; as in improved-diffusion it is clipped to that of the step before
it (this only fixes the log: no noise is drawn at the last step).
"""

from __future__ import annotations

import torch

from difflab.diffusion.reverse import ReverseProcess, check_variance_type
from difflab.samplers.base import GeneratorLike, ModelFn, Sampler, StepCallback, randn_like


class DDPMSampler(Sampler):
    """Ancestral DDPM sampler; ``variance_type`` is ``fixed_small`` (beta-tilde), ``fixed_large`` (beta) or
    ``learned_range`` (log-interpolation between them by the model's extra C output channels)."""

    def __init__(self, schedule, steps: int | None = None, variance_type: str = "fixed_small", **kwargs) -> None:
        super().__init__(schedule, steps if steps is not None else schedule.num_timesteps, **kwargs)
        self.variance_type = check_variance_type(variance_type, "sampler.variance_type")

    def reverse_process(self) -> ReverseProcess:
        """The reverse steps of the chain of selected timesteps; step index S - 1 - i is the i-th step sampled."""
        ab_t, _ = self.alpha_bars()
        return ReverseProcess(ab_t.flip(0))

    def log_variance_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 (log beta~'_clipped, log beta') per selected step, in sampling order: learned_range's bounds."""
        low, high = self.reverse_process().log_variance_bounds()
        return low.flip(0), high.flip(0)

    def _sample(
        self,
        model_fn: ModelFn,
        x: torch.Tensor,
        prediction_type: str,
        generator: GeneratorLike,
        callback: StepCallback | None,
    ) -> torch.Tensor:
        ab_t, _ = self.alpha_bars()
        reverse = self.reverse_process()
        learned = self.variance_type == "learned_range"
        last = len(self.timesteps) - 1
        for i, t in enumerate(self.timesteps):
            x0, _, extra = self.predict_x0_eps(model_fn, x, t, ab_t[i], prediction_type, return_extra=True)
            if learned and extra is None:
                raise ValueError(
                    f"sampler.variance_type='learned_range' needs a model output with 2C channels on dim 1 "
                    f"(prediction, then v in [-1, 1]); got {tuple(x.shape)}, the shape of x_t. Use a backbone with "
                    f"learned variance (twice the output channels) or variance_type='fixed_small'/'fixed_large'."
                )
            step = torch.full((x.shape[0],), last - i, dtype=torch.long, device=x.device)
            # x0 is already clipped / thresholded: it enters as an x0 prediction. The std is taken in float64.
            mean, log_var, _ = reverse.p_mean_log_variance(
                x0, x, step, "x0", self.variance_type, extra if learned else None, log_variance_dtype=torch.float64
            )
            if i == last:  # no noise at the last step
                x = mean
            else:
                x = mean + (0.5 * log_var).exp().to(x.dtype) * randn_like(x, generator)
            if callback is not None:
                callback(i + 1, int(t), x, x0)
        return x
