"""The forward process on real data: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps at chosen t."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from difflab.diffusion.process import GaussianDiffusion
from difflab.diffusion.schedules import NoiseSchedule
from difflab.utils.images import image_grid

__all__ = ["noised_at", "forward_process_figure"]


def noised_at(x0: torch.Tensor, schedule: NoiseSchedule, timesteps: Sequence[int], seed: int = 0) -> torch.Tensor:
    """[len(timesteps), N, ...]: ``x0`` noised to each t (0-based) with one noise draw shared by all t, so a column
    shows the same noise growing."""
    for t in timesteps:
        if not 0 <= int(t) < schedule.num_timesteps:
            raise ValueError(f"timestep {t} is outside 0..{schedule.num_timesteps - 1} (T={schedule.num_timesteps})")
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=x0.dtype)
    diffusion = GaussianDiffusion(schedule)
    return torch.stack([diffusion.q_sample(x0, torch.full((len(x0),), int(t)), noise) for t in timesteps])


def forward_process_figure(x0: torch.Tensor, schedules: dict[str, NoiseSchedule], timesteps: Sequence[int],
                           seed: int = 0) -> plt.Figure:
    """For each named schedule a row of panels: the images ``x0`` ([N, C, H, W] in [-1, 1]) noised to each t, with
    alpha_bar_t in the panel's title."""
    rows, cols = len(schedules), len(timesteps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for row, (name, schedule) in zip(axes, schedules.items()):
        noised = noised_at(x0, schedule, timesteps, seed)
        for ax, t, x_t in zip(row, timesteps, noised):
            ax.imshow(image_grid(x_t, nrow=1, scale=4), interpolation="nearest")
            ab = float(schedule.alphas_cumprod[int(t)])
            ax.set_title(f"{name} t={int(t)}\n" + r"$\bar\alpha$=" + f"{ab:.3g}", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    return fig
