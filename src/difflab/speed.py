"""Fast paths of a run that change no result beyond floating-point rounding (``speed:`` in conf/train.yaml):
the channels-last memory format and ``torch.compile`` of the networks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

__all__ = ["COMPILE_MODES", "channels_last_format", "check_compile_mode", "compile_networks", "clip_grad_norm"]

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def channels_last_format(enabled: bool, data_shape: Sequence[int]) -> torch.memory_format:
    """``torch.channels_last`` when ``enabled`` (images [C, H, W] only), else ``torch.contiguous_format``."""
    if not enabled:
        return torch.contiguous_format
    if len(data_shape) != 3:
        raise ValueError(f"speed.channels_last=true needs image data [C, H, W], but the data has shape "
                         f"{list(data_shape)}; set speed.channels_last=false")
    return torch.channels_last


def check_compile_mode(mode: str | None) -> None:
    """Refuse a ``speed.compile_mode`` torch.compile does not know, naming the modes it does."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"speed.compile_mode={mode!r} is not one of {list(COMPILE_MODES)}")


def compile_networks(networks: Iterable[nn.Module], mode: str | None = None) -> None:
    """``torch.compile`` each network in place (``nn.Module.compile``: its parameters and state-dict keys stay as
    they are, so checkpoints do not change). The first calls of each input shape pay the compilation."""
    check_compile_mode(mode)
    for network in networks:
        network.compile(mode=mode)


def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float | None) -> torch.Tensor | None:
    """The 2-norm of all gradients together (one foreach kernel, ``torch.nn.utils.get_total_norm``), then, when
    ``max_norm`` is set, the gradients scaled by ``min(1, max_norm / (norm + 1e-6))`` with that same norm (as
    ``torch.nn.utils.clip_grad_norm_``, which would compute it again). Returns the norm before clipping, a device
    tensor (no host sync), or None when no parameter has a gradient."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return None
    norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
    if max_norm:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm, foreach=True)
    return norm
