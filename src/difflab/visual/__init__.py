"""Figures that explain a diffusion model: the schedules' curves, the forward process on real data, the learned
reverse field of a 2-D model, and sample grids side by side. Used by the notebooks and by the studies in
``experiments/``; each function returns the figure (``save_figure`` writes a PNG). matplotlib's active backend is
kept (inline in a notebook; Agg on a machine without a display)."""

from difflab.visual.fields import reverse_field, reverse_field_figure
from difflab.visual.forward import forward_process_figure, noised_at
from difflab.visual.grids import save_figure, side_by_side_figure
from difflab.visual.schedules import SCHEDULE_QUANTITIES, schedule_curves, schedule_figure

__all__ = [
    "SCHEDULE_QUANTITIES",
    "forward_process_figure",
    "noised_at",
    "reverse_field",
    "reverse_field_figure",
    "save_figure",
    "schedule_curves",
    "schedule_figure",
    "side_by_side_figure",
]
