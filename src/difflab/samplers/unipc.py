"""UniPC of Zhao et al. 2023 ("UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models"),
B(h) = exp(-h) - 1 ("bh2"), data prediction, order 2: one model evaluation a step, and each evaluation also corrects
the state it was made at.

Notation as in dpm_solver.py / multistep.py (lambda = log(alpha / sigma), h = lambda_n - lambda_s, phi_1 = 1 - exp(-h),
phi_2 = 1 - phi_1 / h, phi_3 = 1/2 - (h - phi_1) / h^2). Step i, from x_i at timestep t_i:
  1. evaluate the model at x_i: x0_i;
  2. corrector UniC (i > 0): redo the step that led to x_i, from the state it started from x_{i-1}, now also using
     x0_i: x_i <- (sigma_i / sigma_{i-1}) x_{i-1} + alpha_i phi_1 D_c with, for that step's order p,
       p = 1: D_c = (x0_{i-1} + x0_i) / 2
       p = 2: D_c = x0_{i-1} + rho_1 (x0_{i-1} - x0_{i-2}) / r + rho_2 (x0_i - x0_{i-1}),  r = h_{i-2} / h_{i-1},
              where rho solves [[1, 1], [-r, 1]] rho = [phi_2 / phi_1, 2 phi_3 / phi_1] (h = h_{i-1});
     x0_i is not re-evaluated at the corrected x_i (the corrector costs no model evaluation);
  3. predictor UniP: the DPM-Solver++ step of order p from the corrected x_i (with B(h) = exp(-h) - 1, UniP-2 is
     DPM-Solver++(2M)'s midpoint step), giving x_{i+1}.
Order p of step i: min(2, i + 1), and 1 for the last step with ``lower_order_final`` (at any number of steps, unlike
DPM-Solver++'s rule). This is diffusers' UniPCMultistepScheduler(solver_order=2, solver_type="bh2", predict_x0=True,
lower_order_final=True, disable_corrector=[]). A last step to sigma = 0 returns x0 at the last timestep (the
corrector's result is then not used, so it is skipped).

The step callback sees x_{i+1} as the predictor left it: the model's next input, before that evaluation corrects it.
"""

from __future__ import annotations

import math

import torch

from difflab.samplers.base import GeneratorLike
from difflab.samplers.multistep import History, MultistepSampler, Step, multistep_x0, ode_step

__all__ = ["UniPCSampler", "corrector_x0"]


def corrector_x0(
    x0s: list[torch.Tensor], x0_new: torch.Tensor, h_prev: list[float], h: float, order: int
) -> torch.Tensor:
    """The x0 estimate D_c of UniC of ``order`` (1 or 2; module docstring) for the step of size ``h`` from s to n.

    ``x0s`` are the predictions up to s (newest last), ``x0_new`` the one at n, ``h_prev[-1]`` = lambda_s - lambda
    of the prediction before s (used for order 2).
    """
    if order == 1:
        return 0.5 * (x0s[-1] + x0_new)
    if order != 2:
        raise ValueError(f"order={order!r} is not a UniC order here; choose one of [1, 2]")
    r = h_prev[-1] / h
    phi_1 = -math.expm1(-h)
    b1 = (1.0 - phi_1 / h) / phi_1
    b2 = 2.0 * (0.5 - (h - phi_1) / h**2) / phi_1
    rho_old = (b1 - b2) / (1.0 + r)
    rho_new = b1 - rho_old
    return x0s[-1] + (rho_old / r) * (x0s[-1] - x0s[-2]) + rho_new * (x0_new - x0s[-1])


class UniPCSampler(MultistepSampler):
    """UniPC (bh2, order 2): DPM-Solver++(2M) steps each corrected by UniC once the next x0 is known."""

    solver_order = 2

    def step_order(self, i: int, solver_order: int) -> int:
        """min(solver_order, i + 1), and 1 for the last step when ``lower_order_final`` (diffusers' UniPC rule)."""
        order = min(solver_order, i + 1)
        return min(order, len(self.timesteps) - i) if self.lower_order_final else order

    def _step(self, step: Step, x: torch.Tensor, x0: torch.Tensor, history: History,
              generator: GeneratorLike) -> torch.Tensor:
        last = history.last
        if last is not None:  # UniC: redo the last step from where it started, with x0 now known at both ends
            d_c = corrector_x0(history.x0s, x0, history.hs[:-1], last.h, history.order)
            x = ode_step(history.x_start, d_c, last.ab_s, last.ab_n, last.h)
        history.add_x0(x0)
        history.last, history.x_start, history.order = step, x, self.step_order(step.i, self.solver_order)
        d = multistep_x0(history.x0s, history.hs, step.h, history.order)
        history.add_h(step.h)
        return ode_step(x, d, step.ab_s, step.ab_n, step.h)
