"""What every sampler shares: timestep selection, per-sample noise, x0 post-processing and the one ``sample`` signature.

A sampler turns a model function ``model_fn(x_t, t) -> output`` (``t`` a LongTensor [B] in 0..T-1) and
start noise ``x_T`` into samples. Swapping samplers is a config change: all take the same arguments.

Model outputs with extra channels. A model may return 2C channels on dim 1 for data with C channels (Improved
DDPM, Nichol & Dhariwal 2021: the first C are the eps/x0/v prediction, the last C the variance interpolation
``v`` in [-1, 1]). :meth:`Sampler.predict_x0_eps` splits such an output once
(``difflab.diffusion.reverse.split_output``): the first C channels are the prediction and every sampler uses only
them; only ``DDPMSampler(variance_type="learned_range")`` uses the rest.

Post-processing of the x0 prediction (options shared by all samplers, diffusers' names):
  ``clip_sample``/``clip_sample_range``: x0 = clamp(x0, -range, range).
  ``thresholding``/``dynamic_thresholding_ratio``/``sample_max_value``: dynamic thresholding of Saharia et al.
  2022 (Imagen, Sec. 2.3): per sample, s = quantile(|x0|, ratio) clamped to [1, sample_max_value] and
  x0 = clamp(x0, -s, s) / s. Takes precedence over ``clip_sample`` when both are on (as in diffusers).
In both cases eps is recomputed from the processed x0, eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar), so
every sampler sees a consistent (x0, eps) pair (diffusers' DDIM calls this ``use_clipped_model_output=True``).

Watching a run. ``sample(..., callback=f)`` calls ``f(i, t, x, x0)`` (:data:`StepCallback`) once with the start noise,
``f(0, timesteps[0], x_T, None)``, then once after each step i = 1..len(timesteps): ``t = timesteps[i - 1]`` is the
step's model timestep, ``x`` the state after the step on the model's scale (x_t of the next step's timestep; the
returned sample after the last step) and ``x0`` the x0 prediction the step made (after clipping / thresholding; Heun:
its first evaluation's; Euler/Heun with churn evaluate at a slightly noisier timestep than ``t``). The callback only
reads: it draws no random numbers and must not change the tensors in place, so the samples are the same with and
without it. (diffusers' ``callback_on_step_end``; k-diffusion's ``callback({'x', 'i', 'sigma', 'denoised'})``.)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable, Sequence, Union

import numpy as np
import torch

from difflab.diffusion.parameterization import check_prediction_type, to_x0_eps
from difflab.diffusion.reverse import split_output
from difflab.diffusion.schedules import NoiseSchedule
from difflab.utils.checks import check_int

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GeneratorLike = Union[None, torch.Generator, Sequence[torch.Generator]]
StepCallback = Callable[[int, int, torch.Tensor, Union[torch.Tensor, None]], None]

TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")

__all__ = [
    "Sampler",
    "ModelFn",
    "GeneratorLike",
    "StepCallback",
    "TIMESTEP_SPACINGS",
    "select_timesteps",
    "randn_like",
    "dynamic_threshold",
]


def select_timesteps(num_timesteps: int, steps: int, spacing: str = "leading") -> np.ndarray:
    """Descending timesteps for a ``steps``-step sampler, spaced as diffusers' ``timestep_spacing``.

    leading:  (arange(steps) * (T // steps))[::-1]           (DDIM paper, diffusers default)
    linspace: round(linspace(0, T - 1, steps))[::-1]
    trailing: round(arange(T, 0, -T / steps)) - 1            (Lin et al. 2023, Table 2)

    For trailing, ``np.arange`` with the float step T/steps can return steps + 1 entries when rounding leaves
    its last value just above 0 (e.g. T=100, steps=29), which then becomes timestep -1; only the first
    ``steps`` entries are kept, which leaves every other value identical to diffusers'.
    """
    check_int("sampler.steps", steps, 1, num_timesteps, note=f"schedule.num_timesteps={num_timesteps}")
    if spacing == "leading":
        ts = np.arange(steps, dtype=np.int64) * (num_timesteps // steps)
        ts = ts[::-1]
    elif spacing == "linspace":
        ts = np.linspace(0, num_timesteps - 1, steps).round().astype(np.int64)[::-1]
    elif spacing == "trailing":
        ts = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)[:steps]).astype(np.int64) - 1
    else:
        raise ValueError(f"sampler.timestep_spacing={spacing!r} is not known; choose one of {list(TIMESTEP_SPACINGS)}")
    # a fresh copy: np.ascontiguousarray keeps the negative stride of a reversed 1-element array, which
    # torch.from_numpy rejects (steps=1 with leading spacing)
    return np.array(ts, dtype=np.int64, copy=True, order="C")


def randn_like(x: torch.Tensor, generator: GeneratorLike = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``; with a list of generators, sample i uses generator i only."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if len(generator) != x.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]} samples; pass one per sample")
    return torch.stack(
        [torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype).to(x.device) for g in generator]
    )


def dynamic_threshold(x0: torch.Tensor, ratio: float = 0.995, max_value: float = 1.0) -> torch.Tensor:
    """Dynamic thresholding (Saharia et al. 2022, Sec. 2.3) of a batch of x0 predictions, each sample separately.

    s = the ``ratio`` quantile of |x0| over all of a sample's entries (linear interpolation between order
    statistics, as ``numpy.quantile``/``torch.quantile``), clamped to [1, max_value]; returns clamp(x0, -s, s) / s.
    With max_value = 1 this is plain clipping to [-1, 1]. Computed in float64 and cast back. Uses a sort rather
    than ``torch.quantile`` (which refuses inputs of more than 2^24 entries).
    """
    flat = x0.reshape(x0.shape[0], -1).double()
    n = flat.shape[1]
    srt = flat.abs().sort(dim=1).values
    pos = ratio * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    s = srt[:, lo] + (pos - lo) * (srt[:, hi] - srt[:, lo])
    s = s.clamp(min=1.0, max=max(float(max_value), 1.0)).unsqueeze(1)
    out = torch.maximum(torch.minimum(flat, s), -s) / s
    return out.reshape(x0.shape).to(x0.dtype)


class Sampler(ABC):
    """A reverse-process sampler over a discrete :class:`NoiseSchedule`.

    Subclasses implement ``_sample`` and may override ``_select_timesteps``; ``self.timesteps`` holds the
    descending integer timesteps the model is evaluated at (``nfe`` may exceed their number for multi-stage
    solvers such as Heun's).
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        steps: int,
        timestep_spacing: str = "leading",
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
    ) -> None:
        if not clip_sample_range > 0:
            raise ValueError(f"sampler.clip_sample_range={clip_sample_range!r} must be > 0")
        if not 0.0 < dynamic_thresholding_ratio <= 1.0:
            raise ValueError(f"sampler.dynamic_thresholding_ratio={dynamic_thresholding_ratio!r} must lie in (0, 1]")
        if not sample_max_value >= 1.0:
            raise ValueError(
                f"sampler.sample_max_value={sample_max_value!r} must be >= 1 "
                "(the threshold s is clamped to [1, sample_max_value])"
            )
        self.schedule = schedule
        self.steps = steps
        self.timestep_spacing = timestep_spacing
        self.clip_sample = bool(clip_sample)
        self.clip_sample_range = float(clip_sample_range)
        self.thresholding = bool(thresholding)
        self.dynamic_thresholding_ratio = float(dynamic_thresholding_ratio)
        self.sample_max_value = float(sample_max_value)
        self.timesteps = self._select_timesteps()
        self.nfe = 0

    def _constructor_caller_level(self) -> int:
        """The warnings stacklevel, counted from ``_select_timesteps`` (level 1), of the code that constructed the
        sampler (or make_sampler): one level more for each ``__init__`` in the class's chain (their calls lie
        between)."""
        return 2 + sum(1 for cls in type(self).__mro__ if issubclass(cls, Sampler) and "__init__" in vars(cls))

    def _select_timesteps(self) -> np.ndarray:
        """The descending model timesteps; by default ``select_timesteps(T, steps, timestep_spacing)``."""
        return select_timesteps(self.schedule.num_timesteps, self.steps, self.timestep_spacing)

    def alpha_bars(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 alpha-bar at each selected timestep and at the step after it (1.0 after the last)."""
        ab = self.schedule.alphas_cumprod[torch.from_numpy(self.timesteps)]
        return ab, torch.cat([ab[1:], ab.new_ones(1)])

    def process_x0(self, x0: torch.Tensor) -> torch.Tensor:
        """Dynamic thresholding if ``thresholding``, else clipping if ``clip_sample``, else ``x0`` unchanged."""
        if self.thresholding:
            return dynamic_threshold(x0, self.dynamic_thresholding_ratio, self.sample_max_value)
        if self.clip_sample:
            return x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return x0

    def predict_x0_eps(
        self,
        model_fn: ModelFn,
        x: torch.Tensor,
        t: int,
        alpha_bar: torch.Tensor,
        prediction_type: str,
        return_extra: bool = False,
    ):
        """One model evaluation at integer timestep ``t`` (``x`` is x_t, alpha_bar = abar_t), converted to (x0, eps).

        A 2C-channel output is split here (see the module docstring); x0 is then clipped / thresholded and eps
        recomputed from it. Returns (x0, eps), or (x0, eps, extra) with ``return_extra`` (extra is the last C
        channels, or None for a C-channel output).
        """
        t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
        out = model_fn(x, t_batch)
        self.nfe += 1
        out, extra = split_output(out, x)
        ab = alpha_bar.expand(x.shape[0])
        x0, eps = to_x0_eps(out, x, ab, prediction_type)
        if self.thresholding or self.clip_sample:
            x0 = self.process_x0(x0)
            _, eps = to_x0_eps(x0, x, ab, "x0")
        return (x0, eps, extra) if return_extra else (x0, eps)

    @torch.no_grad()
    def sample(
        self,
        model_fn: ModelFn,
        x_T: torch.Tensor,
        prediction_type: str = "eps",
        generator: GeneratorLike = None,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Run the reverse process from ``x_T`` and return x_0. ``nfe`` counts this call's model evaluations.

        ``callback(i, t, x, x0)``, when given, sees the start noise and the state after each step (module docstring).
        """
        check_prediction_type(prediction_type)
        self.nfe = 0
        if callback is not None:
            callback(0, int(self.timesteps[0]), x_T, None)
        return self._sample(model_fn, x_T, prediction_type, generator, callback)

    @abstractmethod
    def _sample(
        self,
        model_fn: ModelFn,
        x: torch.Tensor,
        prediction_type: str,
        generator: GeneratorLike,
        callback: StepCallback | None,
    ) -> torch.Tensor:
        """The reverse process from ``x``; calls ``callback(i + 1, t_i, x, x0)`` after step i when it is given."""
