"""A run resumed from a mid-run checkpoint ends exactly where the uninterrupted run ends."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from conftest import compose_config

from difflab.train import train

# A small U-Net with dropout (so the dropout RNG must be restored too), LR warm-up and EMA.
OVERRIDES = [
    "dataset=digits", "dataset.batch_size=32", "backbone=unet_tiny", "backbone.base_channels=16",
    "backbone.num_groups=8", "backbone.num_res_blocks=1", "backbone.dropout=0.1", "optim.warmup_steps=5",
    "ema.decay=0.99", "trainer.max_steps=12", "trainer.val_check_interval=6", "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.model_checkpoint.every_n_train_steps=6", "callbacks.sample_grid.every_n_steps=100",
    "callbacks.sample_grid.num_samples=4", "sampler.steps=2",
]


def losses(run: Path) -> dict[int, float]:
    with open(run / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def test_resume_matches_uninterrupted_run(tmp_path, hydra_cleanup):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    train(compose_config("train", OVERRIDES, full))
    middle = full / "checkpoints" / "step_0000006.ckpt"
    assert middle.is_file()
    train(compose_config("train", [*OVERRIDES, f"ckpt_path={middle}"], resumed))

    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 12
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith("ema.") for k in a["state_dict"])
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        for name in sa:
            assert torch.equal(torch.as_tensor(sa[name]), torch.as_tensor(sb[name])), name
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]

    # The resumed run logs exactly the losses of steps 7..12 of the uninterrupted one.
    la, lb = losses(full), losses(resumed)
    assert sorted(lb) == [s for s in sorted(la) if s >= 6]
    assert all(la[s] == lb[s] for s in lb)
