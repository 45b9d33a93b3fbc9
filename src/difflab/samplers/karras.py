"""Euler and Heun samplers of Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models",
Alg. 1 / Alg. 2), on the noise levels of a discrete DDPM schedule.

Variance-exploding view. With sigma_t = sqrt((1 - abar_t) / abar_t) and x_sigma = x_t / sqrt(abar_t), the
probability-flow ODE is dx/dsigma = (x - D(x; sigma)) / sigma = eps, where D is the model's x0 prediction. The model
itself expects x_t = sqrt(abar_t) x_sigma = x_sigma / sqrt(1 + sigma^2) and an integer timestep t.

Noise levels. The solver steps through sigma_0 > ... > sigma_{N-1} > sigma_N = 0, each sigma_i being exactly the
noise level of an integer model timestep t_i (so the model is always evaluated at the noise level it was trained
for, and the solver's step sizes are the true ones):
  ``karras_sigmas=False`` (default): t_i from ``timestep_spacing`` (as DDIM), sigma_i = sigma_{t_i}.
  ``karras_sigmas=True``: Karras' rho schedule (eq. 5) between the schedule's own sigma_max = sigma_{T-1} and
      sigma_min = sigma_0, sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho;
      each sigma_i is mapped to the integer timestep whose sigma is nearest in log sigma (the same as rounding
      diffusers' log-linearly interpolated timestep) and that timestep's exact sigma is then used. When two
      rho-levels map to the same timestep (many steps: the schedule's lowest levels are sparse in log sigma) the
      duplicate is dropped (with a UserWarning), so ``len(timesteps)`` can be below ``steps`` (T = 1000 linear: from
      79 steps on; cosine, whose sigma_max is ~2e4: already at 10); ``timestep_spacing`` is not used.
  (diffusers instead keeps the exact rho-levels and calls the model at fractional timesteps, which a model taking
  LongTensor timesteps cannot accept.)

Start and end. ``sample`` takes x_T on the model's scale at t_0 (as every difflab sampler) and returns x at sigma = 0
(abar = 1, where x_sigma = x_0). The last step, to sigma = 0, is an Euler step, which returns the x0 prediction;
Heun therefore uses 2N - 1 model evaluations.

Stochasticity (Alg. 2, off by default): with gamma = min(s_churn / N, sqrt(2) - 1) when s_tmin <= sigma_i <= s_tmax,
the sample is first raised to sigma_hat = sigma_i (1 + gamma) by adding sqrt(sigma_hat^2 - sigma_i^2) s_noise z.
sigma_hat is mapped to the nearest timestep in log sigma like the levels above (and its exact sigma used); if that is
t_i itself no noise is added. The model is evaluated at (x_hat, sigma_hat), as in Alg. 2. (diffusers' Euler scheduler
evaluates the model before adding the noise, so its churn is not Alg. 2 and is not matched.)
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from difflab.diffusion.schedules import NoiseSchedule
from difflab.samplers.base import GeneratorLike, ModelFn, Sampler, StepCallback, randn_like
from difflab.utils.checks import check_int, check_number

__all__ = [
    "EulerSampler",
    "HeunSampler",
    "KarrasSampler",
    "schedule_sigmas",
    "karras_sigma_levels",
    "nearest_timesteps",
    "levels_to_timesteps",
]


def schedule_sigmas(schedule: NoiseSchedule) -> np.ndarray:
    """float64 sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T-1 (increasing in t)."""
    ab = schedule.alphas_cumprod.numpy()
    return np.sqrt((1.0 - ab) / ab)


def karras_sigma_levels(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. 2022, eq. 5: n levels from sigma_max down to sigma_min, uniform in sigma^(1/rho)."""
    ramp = np.linspace(0.0, 1.0, n)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def nearest_timesteps(sigmas: np.ndarray, table: np.ndarray) -> np.ndarray:
    """For each sigma, the integer t whose ``table[t]`` (increasing) is nearest in log sigma."""
    log_table = np.log(table)
    log_s = np.log(np.asarray(sigmas, dtype=np.float64))
    hi = np.clip(np.searchsorted(log_table, log_s), 1, len(table) - 1)
    lo = hi - 1
    return np.where(log_s - log_table[lo] <= log_table[hi] - log_s, lo, hi).astype(np.int64)


def levels_to_timesteps(levels: np.ndarray, table: np.ndarray, option: str, kind: str, stacklevel: int) -> np.ndarray:
    """The integer timesteps nearest (in log sigma) to the descending noise ``levels``, consecutive repeats merged.

    A merge (levels closer together than the schedule's own noise levels) is reported as a UserWarning naming
    ``option`` and ``kind`` (e.g. "sampler.karras_sigmas", "rho-levels"); ``stacklevel`` is counted from the caller,
    as the caller would pass it to ``warnings.warn``.
    """
    ts = nearest_timesteps(levels, table)
    keep = np.concatenate([[True], np.diff(ts) != 0])
    if not keep.all():
        warnings.warn(
            f"{option}: the {len(ts)} {kind} map to only {int(keep.sum())} distinct timesteps "
            "of the schedule (levels closer together than the schedule's own noise levels are merged); the sampler "
            f"takes {int(keep.sum())} steps",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    return np.ascontiguousarray(ts[keep])


class KarrasSampler(Sampler):
    """Shared parts of the Euler and Heun samplers (Karras et al. 2022); subclasses set ``second_order``."""

    second_order = False

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int = 50,
        karras_sigmas: bool = False,
        rho: float = 7.0,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
        **kwargs,
    ) -> None:
        check_number("sampler.rho", rho, 0.0, low_open=True)
        check_number("sampler.s_churn", s_churn, 0.0)
        check_number("sampler.s_noise", s_noise, 0.0)
        if not s_tmin <= s_tmax:
            raise ValueError(f"sampler.s_tmin={s_tmin!r} must be <= sampler.s_tmax={s_tmax!r}")
        self.karras_sigmas = bool(karras_sigmas)
        self.rho = float(rho)
        self.s_churn = float(s_churn)
        self.s_tmin = float(s_tmin)
        self.s_tmax = float(s_tmax)
        self.s_noise = float(s_noise)
        self._sigma_table = schedule_sigmas(schedule)
        super().__init__(schedule, steps, **kwargs)

    def _select_timesteps(self) -> np.ndarray:
        if not self.karras_sigmas:
            return super()._select_timesteps()
        T = self.schedule.num_timesteps
        check_int("sampler.steps", self.steps, 1, T, note=f"schedule.num_timesteps={T}")
        levels = karras_sigma_levels(self._sigma_table[0], self._sigma_table[-1], int(self.steps), self.rho)
        return levels_to_timesteps(levels, self._sigma_table, "sampler.karras_sigmas", "rho-levels",
                                   stacklevel=self._constructor_caller_level())

    @property
    def sigmas(self) -> np.ndarray:
        """float64 noise levels of the solver: sigma of each model timestep, then 0."""
        return np.append(self._sigma_table[self.timesteps], 0.0)

    def _model_scale(self, t: int) -> float:
        """sqrt(abar_t): x_t = sqrt(abar_t) x for x in the variance-exploding scale at timestep t's noise level."""
        return math.sqrt(self.schedule.alphas_cumprod[int(t)].item())

    def _denoise(
        self, model_fn: ModelFn, x: torch.Tensor, t: int, prediction_type: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """((x - D(x; sigma_t)) / sigma_t, D(x; sigma_t)) for x in the variance-exploding scale; one model
        evaluation."""
        ab = self.schedule.alphas_cumprod[int(t)]
        x0, _ = self.predict_x0_eps(model_fn, x * self._model_scale(t), t, ab, prediction_type)
        return (x - x0) / float(self._sigma_table[int(t)]), x0

    def _sample(
        self,
        model_fn: ModelFn,
        x: torch.Tensor,
        prediction_type: str,
        generator: GeneratorLike,
        callback: StepCallback | None,
    ) -> torch.Tensor:
        ts = self.timesteps
        sig = self.sigmas
        n = len(ts)
        gamma = min(self.s_churn / n, math.sqrt(2.0) - 1.0)
        x = x / self._model_scale(ts[0])
        for i in range(n):
            t_hat, s_hat = int(ts[i]), float(sig[i])
            if gamma > 0 and self.s_tmin <= sig[i] <= self.s_tmax:
                t_hat = int(nearest_timesteps(np.array([sig[i] * (1.0 + gamma)]), self._sigma_table)[0])
                s_hat = float(self._sigma_table[t_hat])
                if t_hat != int(ts[i]):
                    x = x + math.sqrt(s_hat**2 - float(sig[i]) ** 2) * self.s_noise * randn_like(x, generator)
            d, x0 = self._denoise(model_fn, x, t_hat, prediction_type)
            dt = float(sig[i + 1]) - s_hat
            x_next = x + dt * d
            if self.second_order and sig[i + 1] > 0:
                d_next, _ = self._denoise(model_fn, x_next, int(ts[i + 1]), prediction_type)
                x_next = x + dt * 0.5 * (d + d_next)
            x = x_next
            if callback is not None:  # on the model's scale; after the last step (sigma = 0) x itself
                callback(i + 1, int(ts[i]), x * self._model_scale(ts[i + 1]) if sig[i + 1] > 0 else x, x0)
        return x


class EulerSampler(KarrasSampler):
    """Euler's method on the probability-flow ODE in sigma (Karras et al. 2022, Alg. 2 without the Heun correction).

    Deterministic (s_churn = 0) and on the same timesteps, it is DDIM with eta = 0 step for step.
    """

    second_order = False


class HeunSampler(KarrasSampler):
    """Heun's second-order method (Karras et al. 2022, Alg. 1 / Alg. 2); 2 * steps - 1 model evaluations."""

    second_order = True
