"""A schedule's curves against t: alpha_bar_t, 1 - alpha_bar_t, log SNR_t and beta_t."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from difflab.diffusion.schedules import NoiseSchedule

__all__ = ["SCHEDULE_QUANTITIES", "schedule_curves", "schedule_figure"]

SCHEDULE_QUANTITIES = ("alpha_bar", "one_minus_alpha_bar", "log_snr", "beta")
_LABELS = {"alpha_bar": r"$\bar\alpha_t$", "one_minus_alpha_bar": r"$1-\bar\alpha_t$ (noise variance)",
           "log_snr": r"$\log \mathrm{SNR}_t = \log \bar\alpha_t/(1-\bar\alpha_t)$", "beta": r"$\beta_t$"}


def schedule_curves(schedule: NoiseSchedule, quantity: str) -> tuple[np.ndarray, np.ndarray]:
    """(t / T, values): ``quantity`` (one of :data:`SCHEDULE_QUANTITIES`) at t = 1..T, with t/T in (0, 1]."""
    if quantity not in SCHEDULE_QUANTITIES:
        raise ValueError(f"quantity={quantity!r} is not known; choose one of {list(SCHEDULE_QUANTITIES)}")
    ab = schedule.alphas_cumprod.double().numpy()
    values = {"alpha_bar": ab, "one_minus_alpha_bar": 1.0 - ab, "log_snr": np.log(ab / (1.0 - ab)),
              "beta": schedule.betas.double().numpy()}[quantity]
    t = np.arange(1, schedule.num_timesteps + 1) / schedule.num_timesteps
    return t, values


def schedule_figure(schedules: dict[str, NoiseSchedule], quantities: tuple[str, ...] = ("alpha_bar", "log_snr"),
                    markers: bool | None = None) -> plt.Figure:
    """One panel per quantity, one line per named schedule, against t/T (markers when T is small)."""
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.6 * len(quantities), 3.6), squeeze=False)
    for ax, quantity in zip(axes[0], quantities):
        for name, schedule in schedules.items():
            t, values = schedule_curves(schedule, quantity)
            show_markers = markers if markers is not None else schedule.num_timesteps <= 50
            ax.plot(t, values, marker="o" if show_markers else None, markersize=3,
                    label=f"{name} (T={schedule.num_timesteps})")
        ax.set(xlabel="t / T", ylabel=_LABELS[quantity])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
