"""Turn samples into pictures: image grids, and 2-D point clouds drawn as scatter images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

__all__ = ["image_grid", "scatter_image", "samples_to_image", "save_samples_image"]


def image_grid(
    images: torch.Tensor, nrow: int | None = None, scale: int | None = None, min_side: int = 256
) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 HxWxC grid of ``nrow`` images a row (default: about square), 1-px gaps,
    upscaled (nearest) ``scale`` times (default: as often as keeps the longer side within ``min_side``, at least
    once) so small images stay visible."""
    nrow = nrow or int(math.ceil(math.sqrt(images.shape[0])))
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    grid = make_grid(x, nrow=nrow, padding=1, pad_value=64)
    scale = scale or max(1, min_side // max(grid.shape[1], grid.shape[2]))
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return grid.permute(1, 2, 0).numpy()


def scatter_image(points: torch.Tensor, size: int = 384, lim: float = 1.25) -> np.ndarray:
    """[N, 2] points in data space -> uint8 image with axes box [-lim, lim]^2 (y up)."""
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    img[size // 2, :, :] = 220
    img[:, size // 2, :] = 220
    p = points.detach().float().cpu().numpy()
    px = np.clip(((p[:, 0] + lim) / (2 * lim) * (size - 1)).round().astype(int), 0, size - 1)
    py = np.clip(((lim - p[:, 1]) / (2 * lim) * (size - 1)).round().astype(int), 0, size - 1)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            img[np.clip(py + dy, 0, size - 1), np.clip(px + dx, 0, size - 1)] = (31, 119, 180)
    return img


def samples_to_image(samples: torch.Tensor) -> np.ndarray:
    """A uint8 HxWx3 (or HxWx1) picture of a batch of samples: a grid for images, a scatter for 2-D points."""
    if samples.ndim == 4:
        return image_grid(samples)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return scatter_image(samples)
    raise ValueError(
        f"cannot draw samples of shape {tuple(samples.shape)}: expected [N, C, H, W] images or [N, 2] points")


def save_samples_image(samples: torch.Tensor, path: str | Path) -> Path:
    """Write :func:`samples_to_image` as a PNG at ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = samples_to_image(samples)
    Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(path)
    return path
