"""difflab-train experiment=moons learns the two moons: samples lie on the curves, both moons filled."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import compose_config

from difflab.checkpoints import load_checkpoint, module_from_checkpoint
from difflab.data.moons import from_box
from difflab.samplers import make_sampler
from difflab.train import train


def distance_to_moons(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of each point to the noiseless two-moons curves of scikit-learn, and which moon is nearer."""
    theta = np.linspace(0, math.pi, 2001)
    upper = np.stack([np.cos(theta), np.sin(theta)], 1)
    lower = np.stack([1 - np.cos(theta), 0.5 - np.sin(theta)], 1)
    d_upper = np.linalg.norm(points[:, None] - upper[None], axis=2).min(1)
    d_lower = np.linalg.norm(points[:, None] - lower[None], axis=2).min(1)
    return np.minimum(d_upper, d_lower), (d_lower < d_upper).astype(int)


@pytest.mark.slow  # 3,000 steps, ~3 min
def test_moons_are_learned(tmp_path, hydra_cleanup):
    cfg = compose_config("train", ["experiment=moons", "trainer.max_steps=3000", "callbacks.rich_progress_bar=null",
                                   "callbacks.sample_grid.every_n_steps=100000",
                                   "callbacks.sample_grid.num_samples=16"], tmp_path)
    train(cfg)
    module, _ = module_from_checkpoint(load_checkpoint(tmp_path / "checkpoints" / "last.ckpt"))
    samples = module.sample(make_sampler("ddpm", schedule=module.schedule, steps=1000), 2000, seed=1)
    points = from_box(samples).numpy()
    dist, moon = distance_to_moons(points)
    # The data has Gaussian noise of std 0.05 around the curves: 3 std = 0.15.
    print("fraction on moons", np.mean(dist < 0.15), "balance", moon.mean())
    assert np.mean(dist < 0.15) > 0.9, f"only {np.mean(dist < 0.15):.2%} of samples lie on the moons"
    assert 0.35 < moon.mean() < 0.65, f"moon balance {moon.mean():.2f}"
    # Untrained noise would not pass: a standard normal in data space is mostly off the curves.
    noise_dist, _ = distance_to_moons(from_box(torch.randn(2000, 2)).numpy())
    assert np.mean(noise_dist < 0.15) < 0.5


def fit_moons(objective: str, loss: str, tmp_path) -> tuple[float, float]:
    """Train experiment=moons for 2,000 steps with this objective and loss; (fraction on the moons, balance)."""
    cfg = compose_config("train", [
        "experiment=moons", f"objective={objective}", f"objective.loss={loss}", "trainer.max_steps=2000",
        "callbacks.rich_progress_bar=null", "callbacks.sample_grid.every_n_steps=100000",
        "callbacks.sample_grid.num_samples=16", "callbacks.model_checkpoint.every_n_train_steps=2000",
        "trainer.val_check_interval=2000",
    ], tmp_path)
    train(cfg)
    module, _ = module_from_checkpoint(load_checkpoint(tmp_path / "checkpoints" / "last.ckpt"))
    samples = module.sample(make_sampler("ddpm", schedule=module.schedule, steps=200), 1000, seed=1)
    dist, moon = distance_to_moons(from_box(samples).numpy())
    print(objective, loss, "fraction on moons", np.mean(dist < 0.15), "balance", moon.mean())
    return float(np.mean(dist < 0.15)), float(moon.mean())


# About a minute each: all behind -m slow. The default run's guard is tests/diffusion/test_objective_learns.py (each
# objective and loss learns the closed-form optimal denoiser of Gaussian data); eps with l2 is the moons default.
GRID = [(o, loss) for o in ("eps", "x0", "v") for loss in ("l2", "l1", "huber") if (o, loss) != ("eps", "l2")]


@pytest.mark.slow
@pytest.mark.parametrize(("objective", "loss"), GRID)
def test_every_objective_and_loss_fits_the_moons(objective, loss, tmp_path, hydra_cleanup):
    on_moons, balance = fit_moons(objective, loss, tmp_path)
    assert on_moons > 0.8 and 0.35 < balance < 0.65  # the data: 99.7%; untrained noise: < 50%
