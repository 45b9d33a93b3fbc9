"""DPM-Solver++(2M) of Lu et al. 2022 ("DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models", Alg. 2): a multistep second-order solver of the probability-flow ODE written for the data prediction x0.

With alpha = sqrt(abar), sigma = sqrt(1 - abar), lambda = log(alpha / sigma) and h_i = lambda_i - lambda_{i-1}, the
step from t_{i-1} to t_i is
    x_i = (sigma_i / sigma_{i-1}) x_{i-1} - alpha_i (exp(-h_i) - 1) D_i,
    D_i = x0_{i-1}                                                      (first order: DPM-Solver++1 = DDIM)
    D_i = (1 + 1/(2 r_i)) x0_{i-1} - 1/(2 r_i) x0_{i-2},  r_i = h_{i-1} / h_i     (second order)
where x0_{i-1} is the model's x0 prediction at t_{i-1}. This is diffusers' DPMSolverMultistepScheduler with
``algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint"``; one model evaluation per step.

Timesteps are difflab's ``timestep_spacing`` (the timesteps DDIM uses), but the default here is "trailing": leading
and linspace end at t = 0, and on the usual schedules the step into t = 0 is a huge step in lambda after a small one
(lambda_0 - lambda_Delta >> lambda_Delta - lambda_2Delta), so the multistep extrapolation coefficient 1/(2r) is large
and the result poor (on the 1-D mixture of tests/samplers/test_mixture_target.py, T = 1000 linear: W2 0.32 / 0.34 /
0.10 at 10 steps and 0.12 / 0.14 / 0.05 at 20 for leading / linspace / trailing; DDIM: 0.12 and 0.06). diffusers'
DPM-Solver scheduler avoids t = 0 for the same reason by defining leading/linspace with steps + 1 points and dropping
the last; its "trailing" is the same as difflab's, so the default here equals diffusers' timestep_spacing="trailing".

Final step (``final_sigmas_type``):
  "zero" (default, diffusers' default): the last step goes to sigma = 0 (abar = 1, lambda = +inf). There h = inf,
      a second-order step is undefined (r = 0), so the last step is first order, which returns exactly the x0
      prediction at the last timestep, as diffusers does (it forces first order at the last step for "zero").
  "sigma_min": the last step goes to the noise level of timestep 0 (abar_0 < 1); needs a last selected timestep > 0
      (use timestep_spacing="trailing"), else that step would have zero length.
``lower_order_final`` (default true, diffusers' name and rule): with fewer than 15 steps, the last step is first
order. With final_sigmas_type="zero" it is first order anyway, so the option only matters for "sigma_min".
The first step is always first order (there is no earlier x0 yet).
"""

from __future__ import annotations

import torch

from difflab.samplers.base import GeneratorLike, ModelFn, Sampler, StepCallback

FINAL_SIGMAS_TYPES = ("zero", "sigma_min")


class DPMSolverPP2MSampler(Sampler):
    """DPM-Solver++(2M), deterministic, one model evaluation per step."""

    def __init__(
        self,
        schedule,
        steps: int = 20,
        lower_order_final: bool = True,
        final_sigmas_type: str = "zero",
        timestep_spacing: str = "trailing",
        **kwargs,
    ) -> None:
        super().__init__(schedule, steps, timestep_spacing=timestep_spacing, **kwargs)
        if final_sigmas_type not in FINAL_SIGMAS_TYPES:
            raise ValueError(
                f"sampler.final_sigmas_type={final_sigmas_type!r} is not known; "
                f"choose one of {list(FINAL_SIGMAS_TYPES)}"
            )
        if final_sigmas_type == "sigma_min" and int(self.timesteps[-1]) == 0:
            raise ValueError(
                f"sampler.final_sigmas_type='sigma_min' ends at the noise level of timestep 0, but the last selected "
                f"timestep is already 0 (timestep_spacing={self.timestep_spacing!r}, steps={steps}); use "
                f"timestep_spacing='trailing' or final_sigmas_type='zero'"
            )
        self.lower_order_final = bool(lower_order_final)
        self.final_sigmas_type = final_sigmas_type

    def alpha_bars(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 alpha-bar at each selected timestep and after each step (1.0, or abar_0 for "sigma_min", at the
        end)."""
        ab, ab_next = super().alpha_bars()
        if self.final_sigmas_type == "sigma_min":
            ab_next[-1] = self.schedule.alphas_cumprod[0]
        return ab, ab_next

    def _sample(
        self,
        model_fn: ModelFn,
        x: torch.Tensor,
        prediction_type: str,
        generator: GeneratorLike,
        callback: StepCallback | None,
    ) -> torch.Tensor:
        ab_t, ab_next = self.alpha_bars()
        n = len(self.timesteps)
        x0_prev = None
        h_prev = None
        for i, t in enumerate(self.timesteps):
            x0, _ = self.predict_x0_eps(model_fn, x, t, ab_t[i], prediction_type)
            if ab_next[i] == 1.0:
                # sigma_next = 0: the first-order step (sigma_next / sigma) x + alpha_next (1 - exp(-h)) x0 with
                # h = inf is exactly x0.
                x = x0
            else:
                alpha_s, sigma_s = ab_t[i].sqrt(), (1.0 - ab_t[i]).sqrt()
                alpha_n, sigma_n = ab_next[i].sqrt(), (1.0 - ab_next[i]).sqrt()
                h = (alpha_n.log() - sigma_n.log()) - (alpha_s.log() - sigma_s.log())
                first_order = x0_prev is None or (self.lower_order_final and n < 15 and i == n - 1)
                if first_order:
                    d = x0
                else:
                    r = h_prev / h
                    d = (1.0 + 0.5 / r).to(x.dtype) * x0 - (0.5 / r).to(x.dtype) * x0_prev
                x = (sigma_n / sigma_s).to(x.dtype) * x - (alpha_n * torch.expm1(-h)).to(x.dtype) * d
                x0_prev, h_prev = x0, h
            if callback is not None:
                callback(i + 1, int(t), x, x0)
        return x
