"""The lesson's exercises on digits, as figures (and the numbers printed beside them):

1. forward_process.png: a few held-out digits noised to several t under the linear and cosine schedules;
2. ddpm1000_vs_ddim50.png: DDPM with all 1,000 steps and DDIM (eta 0) with 50 from the same start noise, side by
   side, with trajectory_ddpm1000.png / trajectory_ddim50.png, the x0 predictions of six samples along the way;
3. low_steps.png: the linear and the cosine checkpoint with DDIM at 5, 10 and 50 steps from the same start noise.

    python experiments/lesson_exercises/figures.py \
        --linear outputs/train/sweeps/noise_schedules/0/checkpoints/last.ckpt \
        --cosine outputs/train/sweeps/noise_schedules/3/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from difflab.checkpoints import load_checkpoint, module_from_checkpoint
from difflab.data import DigitsDataModule
from difflab.diffusion import make_schedule
from difflab.samplers import make_sampler
from difflab.samplers.trajectory import TrajectoryRecorder
from difflab.utils.trajectory_views import evenly_spaced, trajectory_strip, view_frames
from difflab.visual import forward_process_figure, save_figure, side_by_side_figure

HERE = Path(__file__).resolve().parent
SWEEP = Path("outputs/train/sweeps/noise_schedules")
FORWARD_T = (0, 100, 250, 500, 750, 999)


def load(path: Path) -> Any:
    """The EMA module of a checkpoint, in eval mode."""
    module, _ = module_from_checkpoint(load_checkpoint(path))
    return module.eval()


def forward_process(out_dir: Path, num_digits: int = 6) -> Path:
    """Exercise 1: no model needed."""
    digits = DigitsDataModule().real_samples("val", num_digits)
    schedules = {"linear": make_schedule("linear", 1000), "cosine": make_schedule("cosine", 1000)}
    for name, schedule in schedules.items():
        print(f"{name}: alpha_bar at t = {list(FORWARD_T)}: "
              + ", ".join(f"{float(schedule.alphas_cumprod[t]):.3g}" for t in FORWARD_T))
    return save_figure(forward_process_figure(digits, schedules, FORWARD_T), out_dir / "forward_process.png")


def draw(
    module: Any, sampler_name: str, steps: int, n: int, follow: int = 0, **options: Any
) -> tuple[torch.Tensor, Any]:
    """Samples 0..n-1 (start noise seeded by (0, i), so the same for every sampler) and, when ``follow`` > 0, the
    trajectory of the first ``follow``."""
    sampler = make_sampler(sampler_name, module.schedule, steps=steps, **options)
    recorder = TrajectoryRecorder(follow) if follow else None
    with torch.no_grad():
        samples = module.sample(sampler, n, seed=0, callback=recorder)
    return samples, (recorder.trajectory() if recorder else None)


def ddpm_vs_ddim(module: Any, out_dir: Path, n: int = 64, follow: int = 6) -> list[Path]:
    """Exercise 2: the same 64 start noises through DDPM-1000 and DDIM-50."""
    ddpm, ddpm_path = draw(module, "ddpm", module.schedule.num_timesteps, n, follow)
    ddim, ddim_path = draw(module, "ddim", 50, n, follow)
    distance = (ddpm - ddim).flatten(1).norm(dim=1) / ddpm.flatten(1).norm(dim=1)
    print(f"DDPM-1000 vs DDIM-50 from the same noise: relative L2 distance per sample median "
          f"{distance.median():.3f} (min {distance.min():.3f}, max {distance.max():.3f})")
    written = [save_figure(side_by_side_figure({"DDPM, 1000 steps": ddpm, "DDIM (eta 0), 50 steps": ddim},
                                               "the same start noise for sample i in both"),
                           out_dir / "ddpm1000_vs_ddim50.png")]
    for name, path in (("ddpm1000", ddpm_path), ("ddim50", ddim_path)):
        frames, labels, _ = view_frames(path, "x0")
        keep = evenly_spaced(frames.shape[0], 8)
        strip = trajectory_strip(frames[keep], [labels[i] for i in keep])
        Image.fromarray(strip).save(out_dir / f"trajectory_{name}.png")
        written.append(out_dir / f"trajectory_{name}.png")
    return written


def low_steps(linear: Any, cosine: Any, out_dir: Path, n: int = 36, steps: tuple[int, ...] = (5, 10, 50)) -> Path:
    """Exercise 3: both schedules' checkpoints under DDIM at few steps, the same start noise."""
    panels = {}
    for name, module in (("linear", linear), ("cosine", cosine)):
        for s in steps:
            panels[f"{name}, DDIM {s} steps"] = draw(module, "ddim", s, n)[0]
    return save_figure(side_by_side_figure(panels, "linear vs cosine checkpoints (seed 0), DDIM eta 0, same noise",
                                           columns=len(steps)),
                       out_dir / "low_steps.png")


def main() -> None:
    parser = argparse.ArgumentParser(description="the lesson's exercise figures")
    parser.add_argument("--linear", type=Path, default=SWEEP / "0" / "checkpoints" / "last.ckpt")
    parser.add_argument("--cosine", type=Path, default=SWEEP / "3" / "checkpoints" / "last.ckpt")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    written = [forward_process(args.out_dir)]
    linear = load(args.linear)
    written += ddpm_vs_ddim(linear, args.out_dir)
    written.append(low_steps(linear, load(args.cosine), args.out_dir))
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
