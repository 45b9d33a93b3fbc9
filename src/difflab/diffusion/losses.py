"""Training objectives. The simple loss of Ho et al. 2020 (eq. 14): E_{t, x0, eps} || target - net(x_t, t) ||^2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from difflab.diffusion.parameterization import check_prediction_type, target_for
from difflab.diffusion.process import GaussianDiffusion

__all__ = ["DiffusionObjective", "LOSSES"]

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l2": lambda pred, target: (pred - target) ** 2,
}


@dataclass
class DiffusionObjective:
    """What the network predicts and how its error is measured.

    ``prediction_type`` is eps|x0|v (diffusers' names); ``loss`` is l2. Each sample's loss is the mean over
    its dimensions, then averaged over the batch.
    """

    prediction_type: str = "eps"
    loss: str = "l2"

    def __post_init__(self) -> None:
        check_prediction_type(self.prediction_type)
        if self.loss not in LOSSES:
            raise ValueError(f"objective.loss={self.loss!r} is not known; choose one of {sorted(LOSSES)}")

    def __call__(
        self,
        network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        diffusion: GaussianDiffusion,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        """Per-sample loss of shape [B] at timesteps ``t`` with the given noise."""
        x_t = diffusion.q_sample(x0, t, noise)
        target = target_for(self.prediction_type, x0, noise, diffusion.alpha_bar(t))
        pred = network(x_t, t)
        err = LOSSES[self.loss](pred.float(), target.float())
        return err.flatten(1).mean(dim=1)
