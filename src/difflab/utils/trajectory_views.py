"""Pictures of a denoising trajectory (:class:`difflab.samplers.trajectory.Trajectory`): a strip and an animated GIF.

``show`` picks the view: ``xt``, the state x_t (frames: the start noise, then the state after each step, the last
being the samples), or ``x0``, the sampler's prediction of x0 at each step. Images: the strip has one row per
sample and one column per shown step; the GIF's frames are grids of the samples (``samples_to_image``). 2-D points:
each strip column and each GIF frame is a scatter plot of all the samples, on axes [-lim, lim]^2 that hold every
x_t of the run (x0 predictions beyond them sit on the border, as in ``scatter_image``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from difflab.utils.checks import check_int, check_number
from difflab.utils.images import image_grid, scatter_image

if TYPE_CHECKING:  # utils stays below the samplers at run time
    from difflab.samplers.trajectory import Trajectory

__all__ = [
    "VIEWS",
    "check_trajectory_options",
    "evenly_spaced",
    "view_frames",
    "trajectory_strip",
    "save_trajectory_gif",
    "save_trajectory",
]

VIEWS = ("xt", "x0")
CELL = 64             # strip: images are upscaled (nearest, whole times) until their longer side is about this
SCATTER_CELL = 192    # strip: side of each scatter plot
LABEL_HEIGHT = 14     # strip: the band of t labels above the columns
CAPTION_HEIGHT = 16   # GIF: the band of the frame's caption
HOLD_LAST_MS = 1000   # GIF: the last frame (the samples) stays at least this long before the loop starts again


def check_trajectory_options(options: Any, n: int, num_steps: int, data_shape: Sequence[int]) -> None:
    """ValueError naming the bad ``trajectory.*`` value and what is accepted, for ``n`` samples drawn by a sampler of
    ``num_steps`` steps from data of ``data_shape`` ([1 or 3, H, W] images or [2] points)."""
    check_int("trajectory.num_samples", options.num_samples, 1, n,
              note=f"n={n}: the trajectory follows the first num_samples of the n samples")
    if options.show not in VIEWS:
        raise ValueError(f"trajectory.show={options.show!r} is not known; choose one of {list(VIEWS)} "
                         "(the noisy state x_t, or the sampler's prediction of x0 at each step)")
    check_int("trajectory.num_frames", options.num_frames, 2)
    available = num_steps + 1 if options.show == "xt" else num_steps
    if options.num_frames > available:
        what = "states (x_T and one after each step)" if options.show == "xt" else "x0 predictions (one per step)"
        raise ValueError(f"trajectory.num_frames={options.num_frames} is more than the {available} {what} that a "
                         f"{num_steps}-step sampler gives with trajectory.show={options.show}; choose "
                         f"trajectory.num_frames <= {available} or more sampler.steps")
    check_number("trajectory.fps", options.fps, 0.0, 50.0, low_open=True,
                 note="GIF frame times are whole hundredths of a second; viewers slow down frames under 0.02 s")
    shape = tuple(data_shape)
    if not ((len(shape) == 3 and shape[0] in (1, 3)) or shape == (2,)):
        raise ValueError(f"save_trajectory=true draws images of 1 or 3 channels ([C, H, W]) or 2-D points ([2]); "
                         f"this model's samples are {list(shape)}")


def evenly_spaced(total: int, num: int) -> list[int]:
    """``num`` distinct indices into ``range(total)``, evenly spread, the first and the last included
    (2 <= num <= total)."""
    if not 2 <= num <= total:
        raise ValueError(f"cannot pick {num} evenly spaced frames of {total}; need 2 <= num <= {total}")
    return [(2 * c * (total - 1) + (num - 1)) // (2 * (num - 1)) for c in range(num)]  # round(c (total-1)/(num-1))


def view_frames(trajectory: Trajectory, show: str) -> tuple[torch.Tensor, list[str], list[str]]:
    """(frames [F, k, *shape], short labels ``t=...``, GIF captions) of the ``show`` view (module docstring)."""
    n, ts = trajectory.num_steps, trajectory.timesteps.tolist()
    if show == "xt":
        labels = [f"t={t}" for t in ts] + ["final"]
        captions = [f"x_t  step {i}/{n}  t={t}" for i, t in enumerate(ts)] + [f"x_t  step {n}/{n}  final"]
        return trajectory.xt, labels, captions
    if show == "x0":
        captions = [f"x0 prediction  step {i + 1}/{n}  t={t}" for i, t in enumerate(ts)]
        return trajectory.x0, [f"t={t}" for t in ts], captions
    raise ValueError(f"trajectory.show={show!r} is not known; choose one of {list(VIEWS)}")


def _band(width: int, height: int, texts: Sequence[str], centers: Sequence[float] | None = None) -> np.ndarray:
    """A white uint8 [height, width, 3] band with ``texts`` centred on ``centers`` (or one text from the left)."""
    band = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(band), ImageFont.load_default()
    for i, text in enumerate(texts):
        x = 4.0 if centers is None else centers[i] - draw.textlength(text, font=font) / 2
        draw.text((x, (height - 11) / 2), text, fill="black", font=font)
    return np.asarray(band)


def _scatter_lim(trajectory: Trajectory) -> float:
    """Half the side of the scatter plots' axes: every x_t of the run fits (at least [-1.25, 1.25]^2)."""
    return max(1.25, 1.05 * float(trajectory.xt.abs().max()))


def trajectory_strip(frames: torch.Tensor, labels: Sequence[str], lim: float = 1.25) -> np.ndarray:
    """uint8 RGB strip of ``frames`` [F, k, *shape] with ``labels`` over its F columns.

    Images [C, H, W] (C = 1 or 3): k rows, each image upscaled s = max(1, 64 // max(H, W)) times; the picture is
    (14 + (k (H + 1) + 1) s) x ((F (W + 1) + 1) s) pixels. Points [2]: one row of F scatter plots of the k points on
    axes [-lim, lim]^2, (14 + 194) x (F 193 + 1) pixels.
    """
    num_frames = frames.shape[0]
    if len(labels) != num_frames:
        raise ValueError(f"got {len(labels)} labels for {num_frames} frames")
    if frames.ndim == 5:  # [F, k, C, H, W] -> row i holds sample i at each shown step
        h, w = frames.shape[-2:]
        scale = max(1, CELL // max(h, w))
        body = image_grid(frames.transpose(0, 1).reshape(-1, *frames.shape[2:]), nrow=num_frames, scale=scale)
    elif frames.ndim == 3 and frames.shape[-1] == 2:
        # the scatter plots, as [-1, 1] images, laid out by the same grid
        plots = np.stack([scatter_image(f, size=SCATTER_CELL, lim=lim) for f in frames])
        h = w = SCATTER_CELL
        scale = 1
        body = image_grid(torch.from_numpy(plots).permute(0, 3, 1, 2).float() / 127.5 - 1.0, nrow=num_frames,
                          scale=scale)
    else:
        raise ValueError(f"cannot draw frames of shape {tuple(frames.shape)}: expected [F, k, C, H, W] or [F, k, 2]")
    centers = [(1 + c * (w + 1) + w / 2) * scale for c in range(num_frames)]
    return np.concatenate([_band(body.shape[1], LABEL_HEIGHT, labels, centers), body])


def save_trajectory_gif(
    frames: torch.Tensor, captions: Sequence[str], path: str | Path, fps: float, lim: float = 1.25
) -> Path:
    """An animated GIF at ``path``: frame i is the grid (or scatter plot) of ``frames[i]`` under ``captions[i]``;
    ``fps`` frames a second, the last held at least 1 s; loops."""
    pictures = []
    for frame, caption in zip(frames, captions, strict=True):
        body = image_grid(frame) if frame.ndim == 4 else scatter_image(frame, lim=lim)
        pictures.append(Image.fromarray(np.concatenate([_band(body.shape[1], CAPTION_HEIGHT, [caption]), body])))
    frame_ms = 1000.0 / fps
    durations = [frame_ms] * (len(pictures) - 1) + [max(frame_ms, HOLD_LAST_MS)]
    path = Path(path)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return path


def save_trajectory(trajectory: Trajectory, out_dir: str | Path, show: str, num_frames: int, fps: float) -> list[Path]:
    """Write ``trajectory.pt`` (:meth:`Trajectory.as_dict`), ``trajectory.png`` (the strip of ``num_frames`` evenly
    spaced frames of the ``show`` view) and ``trajectory.gif`` (every frame) into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames, labels, captions = view_frames(trajectory, show)
    lim = _scatter_lim(trajectory)
    keep = evenly_spaced(frames.shape[0], num_frames)
    torch.save(trajectory.as_dict(), out / "trajectory.pt")
    strip = trajectory_strip(frames[keep], [labels[i] for i in keep], lim)
    Image.fromarray(strip).save(out / "trajectory.png")
    save_trajectory_gif(frames, captions, out / "trajectory.gif", fps, lim)
    return [out / "trajectory.pt", out / "trajectory.png", out / "trajectory.gif"]
