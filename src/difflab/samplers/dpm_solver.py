"""DPM-Solver++ of Lu et al. 2022 ("DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models"): multistep solvers of the diffusion ODE / SDE written for the data prediction x0, one model evaluation a step.

With alpha = sqrt(abar), sigma = sqrt(1 - abar), lambda = log(alpha / sigma) and h = lambda_n - lambda_s, a step from
s to n is
    ODE (dpmpp_2m, dpmpp_3m):          x_n = (sigma_n / sigma_s) x_s + alpha_n (1 - exp(-h)) D
    SDE (dpmpp_2m_sde, dpmpp_3m_sde):  x_n = (sigma_n / sigma_s) exp(-eta h) x_s + alpha_n (1 - exp(-(1 + eta) h)) D
                                             + sigma_n sqrt(1 - exp(-2 eta h)) z,   z ~ N(0, I)
where D extrapolates the model's x0 predictions at s and the steps before it (``multistep_x0``):
    first order  D = x0_s                                   (ODE: DDIM; SDE with eta = 1: DDIM with eta = 1)
    second order D = (1 + 1/(2r)) x0_s - 1/(2r) x0_{s-1},  r = h_{s-1} / h      (Alg. 2, "midpoint")
    third order  from x0_s, x0_{s-1}, x0_{s-2}: Lu et al.'s and diffusers' third-order multistep formula, whose
                 second-difference term has half the Taylor weight, so dpmpp_3m converges at second order (with a
                 smaller error than dpmpp_2m; ``multistep_x0`` has the details); for the SDE its phi are taken at
                 (1 + eta) h
The SDE's ``eta`` (default 1, the diffusion SDE of Lu et al.) scales the noise injected per step, as in Karras et al.'s
and k-diffusion's DPM-Solver++ SDE samplers: eta = 0 is the ODE solver of the same order, step for step.
These are diffusers' DPMSolverMultistepScheduler with algorithm_type="dpmsolver++", solver_order=2 or 3,
solver_type="midpoint" (dpmpp_2m, dpmpp_3m) and algorithm_type="sde-dpmsolver++", solver_order=2,
solver_type="midpoint" (dpmpp_2m_sde, eta = 1). dpmpp_3m_sde (eta = 1) is diffusers' sde-dpmsolver++ with
solver_order=3 in its first- and second-order steps; in a third-order step diffusers (0.42) weights D2 by
alpha_n ((1 - exp(-2h) - 2h) / (2h)^2 - 1/2), which is the half-weight of its own ODE formula at 2h minus alpha_n:
its step equals difflab's minus alpha_n D2, an O(h^2) local error that makes it first order
(tests/samplers/test_sde_samplers.py measures both); difflab's third-order SDE step is k-diffusion's
sample_dpmpp_3m_sde (there in the variance-exploding variables). The SDE's z is drawn with
``randn_like(x, generator)`` at every step that does not end at sigma = 0 (none when eta = 0), so with one
generator per sample, sample i's noise depends on its own generator only.

Order of each step (diffusers' rules): the first step is first order, the second at most second order; with
``lower_order_final`` and fewer than 15 steps the last step is first order and the one before at most second order.
A step to sigma = 0 (``final_sigmas_type="zero"``, the last) returns the x0 prediction at the last timestep.

Timesteps (multistep.py has the options): the default spacing is "trailing": leading and linspace end at t = 0,
and on the usual schedules the step into t = 0 is a huge step in lambda after a small one (lambda_0 - lambda_Delta >>
lambda_Delta - lambda_2Delta), so the multistep extrapolation coefficient 1/(2r) is large and the result poor (on the
1-D mixture of tests/samplers/test_mixture_target.py, T = 1000 linear, dpmpp_2m: W2 0.32 / 0.34 / 0.10 at 10 steps and
0.12 / 0.14 / 0.05 at 20 for leading / linspace / trailing; DDIM: 0.12 and 0.06). diffusers' DPM-Solver scheduler
avoids t = 0 for the same reason by defining leading/linspace with steps + 1 points and dropping the last; its
"trailing" is the same as difflab's, so the default here equals diffusers' timestep_spacing="trailing".
"""

from __future__ import annotations

import math

import torch

from difflab.samplers.base import GeneratorLike, randn_like
from difflab.samplers.multistep import History, MultistepSampler, Step, multistep_x0, ode_step
from difflab.utils.checks import check_number

__all__ = [
    "DPMSolverPPSampler",
    "DPMSolverPPSDESampler",
    "DPMSolverPP2MSampler",
    "DPMSolverPP3MSampler",
    "DPMSolverPP2MSDESampler",
    "DPMSolverPP3MSDESampler",
]


class DPMSolverPPSampler(MultistepSampler):
    """DPM-Solver++ of order ``solver_order`` on the probability-flow ODE; subclasses set the order."""

    solver_order = 2

    def _step(self, step: Step, x: torch.Tensor, x0: torch.Tensor, history: History,
              generator: GeneratorLike) -> torch.Tensor:
        return ode_step(x, self._extrapolated_x0(step, x0, history), step.ab_s, step.ab_n, step.h)

    def _extrapolated_x0(self, step: Step, x0: torch.Tensor, history: History, rate: float = 1.0) -> torch.Tensor:
        """Record ``x0`` and the step in ``history``; the D of this step's order (``multistep_x0``)."""
        history.add_x0(x0)
        d = multistep_x0(history.x0s, history.hs, step.h, self.step_order(step.i, self.solver_order), rate=rate)
        history.add_h(step.h)
        return d


class DPMSolverPPSDESampler(DPMSolverPPSampler):
    """DPM-Solver++ of order ``solver_order`` on the diffusion SDE with noise scale ``eta`` >= 0 (module
    docstring); eta = 0 is the ODE solver of the same order."""

    def __init__(self, schedule, steps: int = 20, eta: float = 1.0, **kwargs) -> None:
        check_number("sampler.eta", eta, 0.0)
        self.eta = float(eta)
        super().__init__(schedule, steps, **kwargs)

    def _step(self, step: Step, x: torch.Tensor, x0: torch.Tensor, history: History,
              generator: GeneratorLike) -> torch.Tensor:
        rate = 1.0 + self.eta
        d = self._extrapolated_x0(step, x0, history, rate)
        # x_n = (sigma_n / sigma_s) e^{-eta h} x + alpha_n (1 - e^{-(1 + eta) h}) d + sigma_n sqrt(1 - e^{-2 eta h}) z
        sigma_s, sigma_n = math.sqrt(1.0 - float(step.ab_s)), math.sqrt(1.0 - float(step.ab_n))
        x = (sigma_n / sigma_s * math.exp(-self.eta * step.h)) * x
        x = x + (math.sqrt(float(step.ab_n)) * -math.expm1(-rate * step.h)) * d
        if self.eta == 0.0:
            return x
        return x + (sigma_n * math.sqrt(-math.expm1(-2.0 * self.eta * step.h))) * randn_like(x, generator)


class DPMSolverPP2MSampler(DPMSolverPPSampler):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), deterministic."""

    solver_order = 2


class DPMSolverPP3MSampler(DPMSolverPPSampler):
    """DPM-Solver++(3M): third-order multistep, deterministic (second order in the second step)."""

    solver_order = 3


class DPMSolverPP2MSDESampler(DPMSolverPPSDESampler):
    """DPM-Solver++(2M) SDE: the second-order multistep solver of the diffusion SDE; draws noise every step."""

    solver_order = 2


class DPMSolverPP3MSDESampler(DPMSolverPPSDESampler):
    """DPM-Solver++(3M) SDE: the third-order multistep solver of the diffusion SDE; draws noise every step."""

    solver_order = 3
