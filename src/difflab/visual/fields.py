"""The learned reverse field of a 2-D model: where one ancestral step moves a point x_t, over a grid of the plane."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from difflab.diffusion.parameterization import to_x0_eps
from difflab.diffusion.process import GaussianDiffusion
from difflab.diffusion.schedules import NoiseSchedule

__all__ = ["reverse_field", "reverse_field_figure"]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def reverse_field(model_fn: ModelFn, schedule: NoiseSchedule, prediction_type: str, t: int, lim: float = 1.5,
                  n: int = 21) -> tuple[torch.Tensor, torch.Tensor]:
    """(points [n*n, 2], moves [n*n, 2]): a grid over [-lim, lim]^2 taken as x_t, and mu_theta(x_t, t) - x_t, the
    mean of the model's reverse step p(x_{t-1} | x_t) (Ho et al. 2020, eq. 11) minus the point."""
    if not 0 <= t < schedule.num_timesteps:
        raise ValueError(f"t={t} is outside 0..{schedule.num_timesteps - 1} (T={schedule.num_timesteps})")
    axis = torch.linspace(-lim, lim, n)
    points = torch.cartesian_prod(axis, axis).flip(1).contiguous()  # (x, y), x varying fastest
    tt = torch.full((len(points),), t, dtype=torch.long)
    x0, _ = to_x0_eps(model_fn(points, tt), points, schedule.alphas_cumprod[tt], prediction_type)
    mean, _, _ = GaussianDiffusion(schedule).q_posterior(x0, points, tt)
    return points, mean - points


def reverse_field_figure(model_fn: ModelFn, schedule: NoiseSchedule, prediction_type: str, timesteps: Sequence[int],
                         data: torch.Tensor | None = None, lim: float = 1.5, n: int = 21) -> plt.Figure:
    """One panel per t: the reverse field's arrows (:func:`reverse_field`) over the plane, the data behind in grey."""
    fig, axes = plt.subplots(1, len(timesteps), figsize=(3.3 * len(timesteps), 3.4), squeeze=False)
    for ax, t in zip(axes[0], timesteps):
        points, moves = reverse_field(model_fn, schedule, prediction_type, int(t), lim, n)
        if data is not None:
            ax.scatter(data[:, 0], data[:, 1], s=1, color="0.75", zorder=0)
        # the longest arrow spans 1.5 grid cells; the title gives the factor the arrows were drawn at
        shrink = 1.5 * (2 * lim / (n - 1)) / max(float(moves.norm(dim=1).max()), 1e-12)
        ax.quiver(points[:, 0], points[:, 1], moves[:, 0] * shrink, moves[:, 1] * shrink, angles="xy",
                  scale_units="xy", scale=1, width=0.004, color="tab:blue")
        ab = float(schedule.alphas_cumprod[int(t)])
        ax.set_title(f"t={int(t)} of {schedule.num_timesteps}, " + r"$\bar\alpha_t$=" + f"{ab:.3g}"
                     + f"\narrows drawn x{shrink:.2g}", fontsize=8)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
        ax.tick_params(labelsize=7)
    fig.suptitle(r"reverse step: arrow from $x_t$ to the mean of $p_\theta(x_{t-1}|x_t)$", fontsize=9)
    fig.tight_layout()
    return fig
