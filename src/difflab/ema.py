"""Exponential moving average of network weights with a warm-up of the decay.

A fixed decay of 0.999 from step 0 keeps (0.999)^1000 = 37% of the random initial weights after
1,000 steps. The decay therefore grows with the step count as in k-diffusion's ``EMAWarmup`` and
diffusers' ``EMAModel(use_ema_warmup=True)``:

    decay(step) = clamp(1 - (1 + step / inv_gamma) ** (-power), 0, max_decay)

``power = 2/3`` suits runs of up to ~1M steps (decay 0.999 at ~31k steps); ``power = None`` uses
``max_decay`` from the first step. The update runs as one ``torch._foreach_lerp_`` over all parameters
(``foreach=True``, the default) or as a loop over them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from difflab.utils.checks import check_number

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage(nn.Module):
    """Holds ``shadow``, an averaged copy of a network, updated with :meth:`update` after each optimizer step."""

    def __init__(
        self, model: nn.Module, max_decay: float = 0.9999, power: float | None = 2.0 / 3.0, inv_gamma: float = 1.0,
        foreach: bool = True,
    ) -> None:
        super().__init__()
        check_number("ema.decay", max_decay, 0.0, 1.0, high_open=True)
        if power is not None:
            check_number("ema.power", power, 0.0, low_open=True, note="or null for a constant decay")
        check_number("ema.inv_gamma", inv_gamma, 0.0, low_open=True)
        self.max_decay, self.power, self.inv_gamma, self.foreach = max_decay, power, inv_gamma, foreach
        self.shadow = copy.deepcopy(model).eval()
        self.shadow.requires_grad_(False)

    def train(self, mode: bool = True) -> "ExponentialMovingAverage":
        """The shadow network always stays in eval mode (no dropout when it is sampled from)."""
        super().train(mode)
        self.shadow.eval()
        return self

    def decay_at(self, step: int) -> float:
        """The decay used for the update after optimizer step ``step`` (counting from 0)."""
        if self.power is None:
            return self.max_decay
        value = 1.0 - (1.0 + step / self.inv_gamma) ** (-self.power)
        return min(max(value, 0.0), self.max_decay)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> float:
        """shadow <- d * shadow + (1 - d) * model for parameters; buffers are copied. Returns d."""
        decay = self.decay_at(step)
        ema_params = list(self.shadow.parameters())
        params = [p.detach() for p in model.parameters()]
        if len(ema_params) != len(params):
            raise RuntimeError("EMA shadow and model have different parameter lists")
        if any(p.dtype != e.dtype for p, e in zip(params, ema_params)):
            params = [p.to(e.dtype) for p, e in zip(params, ema_params)]
        ema_buffers, buffers = list(self.shadow.buffers()), list(model.buffers())
        if self.foreach:
            torch._foreach_lerp_(ema_params, params, 1.0 - decay)
            if ema_buffers:
                torch._foreach_copy_(ema_buffers, buffers)
        else:
            for e, p in zip(ema_params, params):
                e.lerp_(p, 1.0 - decay)
            for e, b in zip(ema_buffers, buffers):
                e.copy_(b)
        return decay
