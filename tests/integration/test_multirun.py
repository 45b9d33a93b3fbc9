"""difflab-train --multirun: one directory per job, each with its own checkpoint and config."""

from __future__ import annotations

import torch
from conftest import run_cli


def test_multirun_over_schedules(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "train", "--multirun", "schedule=linear,cosine,polynomial", "dataset=moons", "backbone=mlp",
        "trainer.max_steps=5", "trainer.val_check_interval=5", "callbacks.model_checkpoint.every_n_train_steps=5",
        "callbacks.sample_grid.every_n_steps=5", "callbacks.sample_grid.num_samples=16", "sampler.steps=5",
        "callbacks.rich_progress_bar=null", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2"]
    names = []
    for job in ("0", "1", "2"):
        ckpt = torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=True)
        names.append(ckpt["difflab"]["config"]["schedule"]["name"])
        assert (sweep / job / "samples" / "final.png").is_file()
        assert (sweep / job / "resolved_config.yaml").is_file()
    assert names == ["linear", "cosine", "polynomial"]
