"""Saving figures, and sample grids shown side by side under their titles."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from difflab.utils.images import samples_to_image

__all__ = ["save_figure", "side_by_side_figure"]


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG (parent directories created) and close it; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def side_by_side_figure(batches: dict[str, torch.Tensor], title: str | None = None,
                        columns: int | None = None) -> plt.Figure:
    """One panel per entry, ``columns`` a row (default: all in one row): the title and a grid (images) or scatter
    (2-D points) of its samples."""
    if not batches:
        raise ValueError("side_by_side_figure needs at least one batch of samples")
    columns = columns or len(batches)
    rows = -(-len(batches) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.5 * rows), squeeze=False)
    for ax in axes.flat[len(batches):]:
        ax.axis("off")
    for ax, (name, samples) in zip(axes.flat, batches.items()):
        ax.imshow(samples_to_image(samples), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
