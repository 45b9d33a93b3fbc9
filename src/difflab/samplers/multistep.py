"""What the multistep solvers in log-SNR share (DPM-Solver++ 2M / 3M / 2M SDE in dpm_solver.py, UniPC in unipc.py):
where they step, where they end, and the step sizes and x0 extrapolation of their steps.

Notation (Lu et al. 2022): alpha = sqrt(abar), sigma = sqrt(1 - abar), lambda = log(alpha / sigma) (half the log-SNR).
Step i goes from the noise level of timestep t_i (index s) to the next level (index n), h_i = lambda_n - lambda_s.

Timesteps:
  ``timestep_spacing`` leading | linspace | trailing: as DDIM (``select_timesteps``). The default is trailing:
      leading and linspace end with a huge step in lambda into t = 0 (dpm_solver.py gives the numbers).
  ``timestep_spacing="logsnr"``: ``steps`` levels uniform in lambda from the schedule's lambda_{T-1} to lambda_0
      (Lu et al. 2022, DPM-Solver, Sec. 3.3; diffusers' ``use_lu_lambdas``).
  ``karras_sigmas=True``: Karras et al.'s rho-levels between sigma_{T-1} and sigma_0, as euler/heun (``rho``); the
      spacing leading/linspace/trailing is then not used, and logsnr together with it is an error.
  Levels (sigma = exp(-lambda)) map to the integer timestep nearest in log sigma, which is diffusers' log-linearly
  interpolated timestep rounded, so the timesteps are diffusers'. Consecutive repeats are merged with a UserWarning
  (``len(timesteps)`` can then be below ``steps``), and the solver uses the mapped timesteps' own noise levels, as
  euler/heun do: the model is evaluated at the level it was trained for and the step sizes are the true ones.
  diffusers' DPMSolverMultistep / UniPCMultistep schedulers instead keep the exact levels in the solver while
  calling the model at the rounded timestep (and keep repeated timesteps); on the reference model of
  tests/samplers/test_diffusers_reference.py the two differ by ~1e-3 (samples of scale ~1.7) at 5 to 40 steps.

Final step (``final_sigmas_type``):
  "zero" (default, diffusers' default): the last step goes to sigma = 0 (abar = 1, lambda = +inf), where every
      order's step returns the x0 prediction at the last timestep (diffusers forces first order there, which is that).
  "sigma_min": the last step goes to the noise level of timestep 0 (abar_0 < 1); needs a last selected timestep > 0
      (trailing spacing without karras_sigmas), else that step would have zero length.
``lower_order_final`` (default true): lowers the order of the last steps by each solver's rule (dpm_solver.py,
unipc.py); with final_sigmas_type="zero" the last step returns x0 anyway. The first step is always first order
(there is no earlier x0 yet), the next ones rise one order a step up to the solver's order (diffusers'
``lower_order_nums``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from difflab.diffusion.schedules import NoiseSchedule
from difflab.samplers.base import TIMESTEP_SPACINGS, GeneratorLike, ModelFn, Sampler, StepCallback
from difflab.samplers.karras import karras_sigma_levels, levels_to_timesteps, schedule_sigmas
from difflab.utils.checks import check_int, check_number

__all__ = [
    "FINAL_SIGMAS_TYPES",
    "MULTISTEP_SPACINGS",
    "History",
    "MultistepSampler",
    "Step",
    "log_snr",
    "logsnr_sigma_levels",
    "multistep_x0",
    "ode_step",
]

MULTISTEP_SPACINGS = (*TIMESTEP_SPACINGS, "logsnr")
FINAL_SIGMAS_TYPES = ("zero", "sigma_min")


def log_snr(abar: torch.Tensor) -> torch.Tensor:
    """lambda = log(alpha / sigma) = log(abar / (1 - abar)) / 2, in float64; +inf where abar = 1."""
    ab = abar.double()
    return 0.5 * (ab.log() - torch.log1p(-ab))


def logsnr_sigma_levels(sigma_min: float, sigma_max: float, n: int) -> np.ndarray:
    """n levels from sigma_max down to sigma_min, uniform in log sigma (so in lambda: sigma = exp(-lambda))."""
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), n))


def multistep_x0(x0s: Sequence[torch.Tensor], h_prev: Sequence[float], h: float, order: int,
                 rate: float = 1.0) -> torch.Tensor:
    """The x0 that DPM-Solver++ of ``order`` (1, 2 or 3; Lu et al. 2022) puts into the exponential-integrator step
    x_n = (sigma_n / sigma_s) x + alpha_n (1 - exp(-h)) D (``rate`` 1, the ODE), or into the SDE step whose x0 weight
    is alpha_n (1 - exp(-rate h)) (``rate`` = 1 + eta, dpm_solver.py): the phi below are then taken at H = rate h.

    ``x0s`` are the x0 predictions, the newest (at the step's start s) last; ``h_prev`` the lambda steps between
    them (h_prev[-1] = lambda_s - lambda of the one before). With backward differences in lambda, r_k = h_prev[-k] / h,
    D1_0 = (x0_s - x0_{s-1}) / r_1 and D1_1 = (x0_{s-1} - x0_{s-2}) / r_2:
      order 1: D = x0_s                                             (DDIM)
      order 2: D = x0_s + D1_0 / 2                                  (Alg. 2, "midpoint")
      order 3: D = x0_s + (phi_2 / phi_1) D1 + (phi_3 / phi_1) D2   with D2 = (D1_0 - D1_1) / (r_1 + r_2),
               D1 = D1_0 + r_1 D2, phi_1 = 1 - exp(-h), phi_2 = 1 - phi_1 / h, phi_3 = 1/2 - (h - phi_1) / h^2
    Order 3 is the third-order multistep formula of Lu et al.'s code and diffusers. There D1 ~ h x0' and D2 ~ h^2 x0''
    / 2 (x0' = dx0/dlambda), whereas integrating the Taylor expansion of x0 over the step weights h^2 x0'' by phi_3:
    the D2 term counts it half, so the step is exact for x0 linear in lambda but not for quadratic x0 (local error
    O(h^3)) and dpmpp_3m converges at second order, with a smaller error than dpmpp_2m (measured in
    tests/samplers/test_new_multistep_samplers.py). With rate = 2 (the SDE) the same holds with H = 2h: phi_2 / phi_1
    weights D1 exactly and phi_3 / phi_1 weights D2 half (tests/samplers/test_sde_samplers.py).
    """
    if order == 1:
        return x0s[-1]
    r1 = h_prev[-1] / h
    d1_0 = (x0s[-1] - x0s[-2]) / r1
    if order == 2:
        return x0s[-1] + 0.5 * d1_0
    if order != 3:
        raise ValueError(f"order={order!r} is not a DPM-Solver++ order; choose one of [1, 2, 3]")
    r2 = h_prev[-2] / h
    d2 = (d1_0 - (x0s[-2] - x0s[-3]) / r2) / (r1 + r2)
    d1 = d1_0 + r1 * d2
    H = rate * h
    phi_1 = -float(np.expm1(-H))
    phi_2 = 1.0 - phi_1 / H
    phi_3 = 0.5 - (H - phi_1) / H**2
    return x0s[-1] + (phi_2 / phi_1) * d1 + (phi_3 / phi_1) * d2


def ode_step(x: torch.Tensor, d: torch.Tensor, ab_s: torch.Tensor, ab_n: torch.Tensor, h: float) -> torch.Tensor:
    """The exponential-integrator step of the probability-flow ODE in data prediction, from abar_s to abar_n < 1 with
    the x0 estimate ``d`` held fixed over the step: x_n = (sigma_n / sigma_s) x + alpha_n (1 - exp(-h)) d."""
    sigma_ratio = float(((1.0 - ab_n) / (1.0 - ab_s)).sqrt())
    return sigma_ratio * x - (float(ab_n.sqrt()) * float(np.expm1(-h))) * d


@dataclass(frozen=True)
class Step:
    """Step ``i`` of a run: from alpha-bar ``ab_s`` (timestep i) to ``ab_n`` < 1, ``h`` = lambda_n - lambda_s."""

    i: int
    ab_s: torch.Tensor
    ab_n: torch.Tensor
    h: float


@dataclass
class History:
    """What one sampling run of a multistep solver remembers: the latest ``size`` x0 predictions and lambda steps
    (newest last), and for a corrector the last step (``last``), the state it started from and its order."""

    size: int
    x0s: list[torch.Tensor] = field(default_factory=list)
    hs: list[float] = field(default_factory=list)
    last: Step | None = None
    x_start: torch.Tensor | None = None
    order: int = 1

    def add_x0(self, x0: torch.Tensor) -> None:
        self.x0s = [*self.x0s, x0][-self.size :]

    def add_h(self, h: float) -> None:
        self.hs = [*self.hs, h][-self.size :]


class MultistepSampler(Sampler):
    """Timesteps, final noise level and the loop of the multistep solvers (module docstring); one model evaluation
    per step. Subclasses set ``solver_order`` and implement ``_step``."""

    solver_order = 2

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int = 20,
        lower_order_final: bool = True,
        final_sigmas_type: str = "zero",
        timestep_spacing: str = "trailing",
        karras_sigmas: bool = False,
        rho: float = 7.0,
        **kwargs,
    ) -> None:
        check_number("sampler.rho", rho, 0.0, low_open=True)
        if final_sigmas_type not in FINAL_SIGMAS_TYPES:
            raise ValueError(
                f"sampler.final_sigmas_type={final_sigmas_type!r} is not known; "
                f"choose one of {list(FINAL_SIGMAS_TYPES)}"
            )
        if timestep_spacing not in MULTISTEP_SPACINGS:
            raise ValueError(
                f"sampler.timestep_spacing={timestep_spacing!r} is not known; choose one of {list(MULTISTEP_SPACINGS)}"
            )
        if karras_sigmas and timestep_spacing == "logsnr":
            raise ValueError(
                "sampler.karras_sigmas=True and sampler.timestep_spacing='logsnr' each choose the noise levels; "
                "set one of them (karras_sigmas=False, or timestep_spacing='trailing')"
            )
        self.karras_sigmas = bool(karras_sigmas)
        self.rho = float(rho)
        super().__init__(schedule, steps, timestep_spacing=timestep_spacing, **kwargs)
        if final_sigmas_type == "sigma_min" and int(self.timesteps[-1]) == 0:
            raise ValueError(
                f"sampler.final_sigmas_type='sigma_min' ends at the noise level of timestep 0, but the last selected "
                f"timestep is already 0 (timestep_spacing={self.timestep_spacing!r}, karras_sigmas={self.karras_sigmas}"
                f", steps={steps}); use timestep_spacing='trailing' without karras_sigmas, or final_sigmas_type='zero'"
            )
        self.lower_order_final = bool(lower_order_final)
        self.final_sigmas_type = final_sigmas_type

    def _select_timesteps(self) -> np.ndarray:
        if not self.karras_sigmas and self.timestep_spacing != "logsnr":
            return super()._select_timesteps()
        T = self.schedule.num_timesteps
        check_int("sampler.steps", self.steps, 1, T, note=f"schedule.num_timesteps={T}")
        table = schedule_sigmas(self.schedule)
        if self.karras_sigmas:
            levels = karras_sigma_levels(table[0], table[-1], int(self.steps), self.rho)
            option, kind = "sampler.karras_sigmas", "rho-levels"
        else:
            levels = logsnr_sigma_levels(table[0], table[-1], int(self.steps))
            option, kind = "sampler.timestep_spacing='logsnr'", "log-SNR levels"
        return levels_to_timesteps(levels, table, option, kind, stacklevel=self._constructor_caller_level())

    def alpha_bars(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 alpha-bar at each selected timestep and after each step (1.0, or abar_0 for "sigma_min", at the
        end)."""
        ab, ab_next = super().alpha_bars()
        if self.final_sigmas_type == "sigma_min":
            ab_next[-1] = self.schedule.alphas_cumprod[0]
        return ab, ab_next

    def step_order(self, i: int, solver_order: int) -> int:
        """The order of step i (0-based): one more than the steps before it, at most ``solver_order``; with
        ``lower_order_final`` and fewer than 15 steps also at most the number of steps left (diffusers' rule:
        the last step first order, the one before at most second)."""
        order = min(solver_order, i + 1)
        n = len(self.timesteps)
        if self.lower_order_final and n < 15:
            order = min(order, n - i)
        return order

    def _sample(self, model_fn: ModelFn, x: torch.Tensor, prediction_type: str, generator: GeneratorLike,
                callback: StepCallback | None) -> torch.Tensor:
        ab_t, ab_next = self.alpha_bars()
        lam_t, lam_next = log_snr(ab_t), log_snr(ab_next)
        history = History(self.solver_order)
        for i, t in enumerate(self.timesteps):
            x0, _ = self.predict_x0_eps(model_fn, x, t, ab_t[i], prediction_type)
            if ab_next[i] == 1.0:
                x = x0  # sigma_n = 0: the step returns x0 whatever its order (module docstring)
            else:
                step = Step(i, ab_t[i], ab_next[i], float(lam_next[i] - lam_t[i]))
                x = self._step(step, x, x0, history, generator)
            if callback is not None:
                callback(i + 1, int(t), x, x0)
        return x

    @abstractmethod
    def _step(self, step: Step, x: torch.Tensor, x0: torch.Tensor, history: History,
              generator: GeneratorLike) -> torch.Tensor:
        """The step from ``x`` at timestep ``step.i``, where the model predicted ``x0``; updates ``history``."""
