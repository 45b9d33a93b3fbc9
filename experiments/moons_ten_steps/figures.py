"""The study's two explanatory figures (the tables and curves come from difflab-report):

- schedules.png: 1 - alpha_bar_t and log SNR_t of the ten-step polynomial, linear and cosine schedules;
- field_<schedule>.png: the learned reverse field over the plane at several t, from a trained checkpoint of each
  schedule (box scaling, seed 0), with the held-out points behind.

    python experiments/moons_ten_steps/figures.py --sweep outputs/train/sweeps/moons_ten_steps
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from difflab.builders import build_datamodule
from difflab.checkpoints import load_checkpoint, module_from_checkpoint
from difflab.configs import config_dir
from difflab.reporting.jobs import find_jobs, read_job
from difflab.visual import reverse_field_figure, save_figure, schedule_figure

SCHEDULES = ("polynomial", "linear", "cosine")
HERE = Path(__file__).resolve().parent


def schedules() -> dict[str, object]:
    """The three ten-step schedules as experiment=moons_ten_steps composes them."""
    out = {}
    with initialize_config_dir(config_dir(), version_base="1.3"):
        for name in SCHEDULES:
            cfg = compose("train", overrides=["experiment=moons_ten_steps", f"schedule=ten_steps/{name}"])
            out[name] = instantiate(cfg.schedule)
    return out


def field_checkpoints(sweep: Path, seed: str = "0") -> dict[str, Path]:
    """schedule name -> last.ckpt of the box-scaled job with ``seed`` in ``sweep``."""
    found = {}
    for path in find_jobs([sweep]):
        job = read_job(path)
        if job.setting("seed") == seed and job.setting("dataset.scaling") == "box":
            name = str(job.setting("schedule")).split("/")[-1]
            if (path / "checkpoints" / "last.ckpt").is_file():
                found[name] = path / "checkpoints" / "last.ckpt"
    return found


def draw(sweep: Path | None, out_dir: Path, timesteps: tuple[int, ...] = (9, 6, 3, 1, 0)) -> list[Path]:
    """Write schedules.png and, for each schedule with a checkpoint in ``sweep``, field_<schedule>.png."""
    written = [save_figure(schedule_figure(schedules(), ("one_minus_alpha_bar", "log_snr")), out_dir / "schedules.png")]
    for name, ckpt in (field_checkpoints(sweep) if sweep else {}).items():
        module, train_cfg = module_from_checkpoint(load_checkpoint(ckpt))
        module.eval()
        network = module.sampling_network(use_ema=True)
        data = build_datamodule(train_cfg).real_samples("val")
        fig = reverse_field_figure(lambda x, t: network(x, t), module.schedule, module.objective.prediction_type,
                                   [t for t in timesteps if t < module.schedule.num_timesteps], data=data)
        fig.suptitle(f"{name} schedule, T={module.schedule.num_timesteps}: arrow from x_t to the mean of "
                     "p(x_{t-1} | x_t)", fontsize=9)
        written.append(save_figure(fig, out_dir / f"field_{name}.png"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="schedules.png and the reverse-field figures of the study")
    parser.add_argument("--sweep", type=Path, default=None, help="the trained sweep (for the field figures)")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for path in draw(args.sweep, args.out_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
