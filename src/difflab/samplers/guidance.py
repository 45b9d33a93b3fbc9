"""Classifier-free guidance (Ho & Salimans 2022), wrapped around a network so samplers stay unaware of it.

    out = out(x, t, null) + w * (out(x, t, y) - out(x, t, null))

``w = 1`` is plain conditional sampling, ``w = 0`` unconditional. With a learned variance (the network
returns twice the data channels) only the prediction half is guided; the variance half is the
conditional one's, as in GLIDE.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["class_labels", "guided_model_fn"]


def class_labels(
    spec: int | str | None, indices: range, num_classes: int | None, device: torch.device | str = "cpu"
) -> torch.Tensor | None:
    """Labels for samples ``indices``: ``"all"`` cycles i % num_classes, an int k gives k to every sample,
    ``"none"``/None gives the null label (unconditional). Unconditional models get None."""
    if num_classes is None:
        if spec not in (None, "none", "all"):
            raise ValueError(
                f"class_label={spec!r} was given but the model is not class-conditional "
                "(train with conditioning.enabled=true)"
            )
        return None
    if spec in (None, "none"):
        values = [num_classes] * len(indices)
    elif spec == "all":
        values = [i % num_classes for i in indices]
    elif isinstance(spec, int) and not isinstance(spec, bool) and 0 <= spec < num_classes:
        values = [spec] * len(indices)
    else:
        raise ValueError(f"class_label={spec!r} must be 'all', 'none' or an integer in [0, {num_classes - 1}]")
    return torch.tensor(values, dtype=torch.long, device=device)


def guided_model_fn(
    network: Callable[..., torch.Tensor], y: torch.Tensor, null_label: int, guidance_scale: float
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``model_fn(x, t)`` for a conditional ``network(x, t, y)`` with labels ``y`` and guidance ``guidance_scale``."""
    if guidance_scale == 1.0:
        return lambda x, t: network(x, t, y)
    null = torch.full_like(y, null_label)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = network(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = out.chunk(2)
        c = x.shape[1]
        guided = uncond[:, :c] + guidance_scale * (cond[:, :c] - uncond[:, :c])
        return torch.cat([guided, cond[:, c:]], dim=1) if out.shape[1] > c else guided

    return model_fn
