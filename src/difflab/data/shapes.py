"""Procedural images of filled circles (label 0) and axis-aligned squares (label 1) on black."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from difflab.data.base import ArrayDataModule
from difflab.utils.checks import check_int, check_number

__all__ = ["ShapesDataModule", "draw_shapes"]

CIRCLE, SQUARE = 0, 1


def draw_shapes(
    labels: torch.Tensor, image_size: int, channels: int, generator: torch.Generator, supersample: int = 8
) -> torch.Tensor:
    """Draw one shape per label as float32 [N, C, S, S] in [-1, 1] (background -1).

    Half-size ``r`` (circle radius / half the square's side) is uniform in [0.15 S, min(0.35 S, S/2 - 1)] and
    the centre uniform such that the shape lies inside [1, S - 1]^2: the one-pixel border is always background.
    Anti-aliasing: each pixel row is cut into ``supersample`` sub-rows; per sub-row the shape is an interval
    whose overlap with each pixel is exact. Colour: white; with 3 channels random, brightest component 1.
    """
    n, s = len(labels), image_size
    lo, hi = 0.15 * s, min(0.35 * s, s / 2 - 1)
    r = lo + (hi - lo) * torch.rand(n, generator=generator)
    centre = (1 + r)[:, None] + (s - 2 - 2 * r)[:, None] * torch.rand(n, 2, generator=generator)  # (x, y)
    colour = torch.ones(n, channels)
    if channels > 1:
        colour = torch.rand(n, channels, generator=generator)
        colour = colour / colour.amax(dim=1, keepdim=True)

    sub_rows = (torch.arange(s * supersample) + 0.5) / supersample  # sub-row centres in pixel units
    dy = sub_rows[None, :] - centre[:, 1, None]  # [N, S * ss]
    rr = r[:, None]
    square_half = torch.where(dy.abs() <= rr, rr, torch.zeros(()))
    circle_half = (rr**2 - dy**2).clamp(min=0).sqrt()
    half = torch.where(labels[:, None] == SQUARE, square_half, circle_half)  # half-width of the row's chord
    left, right = centre[:, 0, None, None] - half[..., None], centre[:, 0, None, None] + half[..., None]
    edges = torch.arange(s + 1, dtype=torch.float32)  # pixel edges in x
    # Overlap of [left, right] with pixel [j, j + 1] is F(j + 1) - F(j), F(e) = clamp(e, left, right);
    # averaging F over the sub-rows first (it is linear) keeps the big intermediate to one tensor.
    cover = torch.empty(n, s, s)
    chunk = max(1, 2**23 // ((s + 1) * s * supersample))  # bound memory for large images
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        f = torch.clamp(edges, min=left[sl], max=right[sl]).view(-1, s, supersample, s + 1).mean(dim=2)
        cover[sl] = f.diff(dim=-1).clamp(0.0, 1.0)  # clamp float rounding
    return (cover[:, None] * colour[:, :, None, None]) * 2.0 - 1.0


class ShapesDataModule(ArrayDataModule):
    """``num_samples`` circle/square images (exactly balanced labels), the last ``round(val_fraction * N)`` val.

    The images depend only on ``data_seed`` (and the size arguments), never on the training ``seed``.
    2 classes; the anti-aliased edges take any value in [-1, 1] (continuous: no ``num_bins``).
    """

    name = "shapes"
    num_classes = 2
    num_bins = None

    def __init__(
        self,
        image_size: int = 16,
        num_samples: int = 4096,
        val_fraction: float = 0.1,
        channels: int = 1,
        data_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """``kwargs`` go to :class:`ArrayDataModule`."""
        super().__init__(**kwargs)
        check_int("dataset.image_size", image_size, 8)
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ValueError(f"dataset.channels={channels!r} must be 1 (white shapes) or 3 (coloured shapes)")
        check_int("dataset.num_samples", num_samples, 2)
        check_number("dataset.val_fraction", val_fraction, 0.0, 1.0, high_open=True)
        self.num_val = round(val_fraction * num_samples)
        if num_samples - self.num_val < 1:
            raise ValueError(f"dataset.num_samples={num_samples} leaves no training images")
        self.image_size, self.num_samples, self.val_fraction = image_size, num_samples, val_fraction
        self.channels, self.data_seed = channels, data_seed

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def build(self) -> tuple[TensorDataset, TensorDataset]:
        g = torch.Generator().manual_seed(self.data_seed)
        labels = (torch.arange(self.num_samples) % 2)[torch.randperm(self.num_samples, generator=g)]
        images = draw_shapes(labels, self.image_size, self.channels, g)
        n_train = self.num_samples - self.num_val
        return TensorDataset(images[:n_train], labels[:n_train]), TensorDataset(images[n_train:], labels[n_train:])
