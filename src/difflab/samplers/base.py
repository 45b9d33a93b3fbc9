"""What every sampler shares: timestep selection, per-sample noise and the one ``sample`` signature.

A sampler turns a model function ``model_fn(x_t, t) -> output`` (``t`` a LongTensor [B] in 0..T-1) and
start noise ``x_T`` into samples. Swapping samplers is a config change: all take the same arguments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence, Union

import numpy as np
import torch

from difflab.diffusion.parameterization import check_prediction_type, to_x0_eps
from difflab.diffusion.schedules import NoiseSchedule

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GeneratorLike = Union[None, torch.Generator, Sequence[torch.Generator]]

TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")

__all__ = ["Sampler", "ModelFn", "GeneratorLike", "TIMESTEP_SPACINGS", "select_timesteps", "randn_like"]


def select_timesteps(num_timesteps: int, steps: int, spacing: str = "leading") -> np.ndarray:
    """Descending timesteps for a ``steps``-step sampler, spaced as diffusers' ``timestep_spacing``.

    leading:  (arange(steps) * (T // steps))[::-1]           (DDIM paper, diffusers default)
    linspace: round(linspace(0, T - 1, steps))[::-1]
    trailing: round(arange(T, 0, -T / steps)) - 1            (Lin et al. 2023, Table 2)

    For trailing, ``np.arange`` with the float step T/steps can return steps + 1 entries when rounding leaves
    its last value just above 0 (e.g. T=100, steps=29), which then becomes timestep -1; only the first
    ``steps`` entries are kept, which leaves every other value identical to diffusers'.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= num_timesteps:
        raise ValueError(f"sampler.steps={steps!r} must be an integer in [1, schedule.num_timesteps={num_timesteps}]")
    if spacing == "leading":
        ts = np.arange(steps, dtype=np.int64) * (num_timesteps // steps)
        ts = ts[::-1]
    elif spacing == "linspace":
        ts = np.linspace(0, num_timesteps - 1, steps).round().astype(np.int64)[::-1]
    elif spacing == "trailing":
        ts = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)[:steps]).astype(np.int64) - 1
    else:
        raise ValueError(f"sampler.timestep_spacing={spacing!r} is not known; choose one of {list(TIMESTEP_SPACINGS)}")
    return np.ascontiguousarray(ts)


def randn_like(x: torch.Tensor, generator: GeneratorLike = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``; with a list of generators, sample i uses generator i only."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if len(generator) != x.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]} samples; pass one per sample")
    return torch.stack(
        [torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype).to(x.device) for g in generator]
    )


class Sampler(ABC):
    """A reverse-process sampler over a discrete :class:`NoiseSchedule`."""

    def __init__(self, schedule: NoiseSchedule, steps: int, timestep_spacing: str = "leading", clip_sample: bool = False, clip_sample_range: float = 1.0) -> None:
        self.schedule = schedule
        self.steps = steps
        self.timestep_spacing = timestep_spacing
        self.clip_sample = clip_sample
        self.clip_sample_range = clip_sample_range
        self.timesteps = select_timesteps(schedule.num_timesteps, steps, timestep_spacing)
        self.nfe = 0

    def alpha_bars(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 alpha-bar at each selected timestep and at the step after it (1.0 after the last)."""
        ab = self.schedule.alphas_cumprod[torch.from_numpy(self.timesteps)]
        return ab, torch.cat([ab[1:], ab.new_ones(1)])

    def predict_x0_eps(
        self, model_fn: ModelFn, x: torch.Tensor, t: int, alpha_bar: torch.Tensor, prediction_type: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One model evaluation at integer timestep ``t``, converted to (x0, eps), with optional clipping of x0."""
        t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
        out = model_fn(x, t_batch)
        self.nfe += 1
        ab = alpha_bar.expand(x.shape[0])
        x0, eps = to_x0_eps(out, x, ab, prediction_type)
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_sample_range, self.clip_sample_range)
            _, eps = to_x0_eps(x0, x, ab, "x0")
        return x0, eps

    @torch.no_grad()
    def sample(self, model_fn: ModelFn, x_T: torch.Tensor, prediction_type: str = "eps", generator: GeneratorLike = None) -> torch.Tensor:
        """Run the reverse process from ``x_T`` and return x_0. ``nfe`` counts this call's model evaluations."""
        check_prediction_type(prediction_type)
        self.nfe = 0
        return self._sample(model_fn, x_T, prediction_type, generator)

    @abstractmethod
    def _sample(self, model_fn: ModelFn, x: torch.Tensor, prediction_type: str, generator: GeneratorLike) -> torch.Tensor: ...
