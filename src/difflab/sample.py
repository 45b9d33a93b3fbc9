"""difflab-sample: draw samples from a checkpoint alone (its config rebuilds the model).

    difflab-sample ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt n=64 sampler=ddim sampler.steps=50
    difflab-sample ckpt_path=... save_trajectory=true trajectory.show=x0   # also the denoising of the first samples
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from difflab.builders import build_sampler
from difflab.checkpoints import load_checkpoint, module_from_checkpoint
from difflab.configs import CONFIG_DIR
from difflab.errors import ConfigError, reported_as_config_error, user_errors
from difflab.samplers.guidance import class_labels
from difflab.samplers.trajectory import Trajectory, TrajectoryRecorder
from difflab.utils.images import save_samples_image
from difflab.utils.trajectory_views import check_trajectory_options, save_trajectory

__all__ = ["sample", "main"]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sample(cfg: DictConfig) -> Path:
    """Draw ``cfg.n`` samples (sample i seeded by (seed, i)); write samples.png and samples.pt (and with
    ``save_trajectory`` the first ``trajectory.num_samples`` samples' denoising, see ``trajectory_views``); return the
    .pt path."""
    with reported_as_config_error():
        if cfg.n < 1 or cfg.batch_size < 1:
            raise ConfigError(f"n={cfg.n} and batch_size={cfg.batch_size} must both be >= 1")
        if not isinstance(cfg.save_trajectory, bool):
            raise ConfigError(f"save_trajectory={cfg.save_trajectory!r} must be true or false")
        checkpoint = load_checkpoint(cfg.ckpt_path)
        module, train_cfg = module_from_checkpoint(checkpoint)
        # The sampler node may refer to the trained schedule (e.g. ${schedule.num_timesteps}).
        merged = train_cfg.copy()
        OmegaConf.update(merged, "sampler", OmegaConf.to_container(cfg.sampler, resolve=False), merge=False)
        sampler = build_sampler(merged.sampler, module.schedule)
        class_labels(cfg.class_label, range(1), module.num_classes)  # reject a bad label before any work
        if cfg.save_trajectory:
            check_trajectory_options(cfg.trajectory, cfg.n, len(sampler.timesteps), module.data_shape)
        module.to(resolve_device(cfg.device))

    traced = cfg.trajectory.num_samples if cfg.save_trajectory else 0  # samples 0 .. traced - 1
    batches, recorders = [], []
    for start in range(0, cfg.n, cfg.batch_size):
        count = min(cfg.batch_size, cfg.n - start)
        recorder = TrajectoryRecorder(min(count, traced - start)) if start < traced else None
        batches.append(module.sample(
            sampler, count, seed=cfg.seed, start_index=start, class_label=cfg.class_label,
            guidance_scale=cfg.guidance_scale, use_ema=cfg.use_ema, callback=recorder,
        ).cpu())
        if recorder is not None:
            recorders.append(recorder)
    samples = torch.cat(batches)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(samples, out / "samples.pt")
    save_samples_image(samples, out / "samples.png")
    meta = {"ckpt_path": str(cfg.ckpt_path), "n": cfg.n, "seed": cfg.seed, "use_ema": cfg.use_ema,
            "class_label": cfg.class_label, "guidance_scale": cfg.guidance_scale, "nfe": sampler.nfe,
            "sampler": OmegaConf.to_container(merged.sampler, resolve=True)}
    if recorders:
        meta["trajectory"] = OmegaConf.to_container(cfg.trajectory, resolve=True)
        trajectory = Trajectory.cat([r.trajectory() for r in recorders])
        written = save_trajectory(trajectory, out, cfg.trajectory.show, cfg.trajectory.num_frames, cfg.trajectory.fps)
        print(f"difflab-sample: wrote the denoising of samples 0..{traced - 1} to "
              + ", ".join(str(p) for p in written))
    OmegaConf.save(OmegaConf.create(meta), out / "samples.yaml")
    print(f"difflab-sample: wrote {cfg.n} samples to {out / 'samples.pt'} and {out / 'samples.png'} "
          f"({sampler.nfe} model evaluations per batch)")
    return out / "samples.pt"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    """Console entry point ``difflab-sample``."""
    with user_errors("difflab-sample"):
        sample(cfg)


if __name__ == "__main__":
    main()
