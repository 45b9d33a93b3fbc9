"""Loggers and mixed precision through the real entry point."""

from __future__ import annotations

import csv
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from conftest import compose_config

from difflab.train import train

SHORT = ["dataset=digits", "dataset.batch_size=16", "backbone.base_channels=16", "trainer.max_steps=4",
         "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
         "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.sample_grid.every_n_steps=2",
         "callbacks.sample_grid.num_samples=4", "sampler.steps=2", "callbacks.rich_progress_bar=null"]


def test_many_loggers_write_offline(tmp_path, hydra_cleanup, monkeypatch):
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: W&B must go offline by itself
    train(compose_config("train", [*SHORT, "logger=many"], tmp_path))
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"train/loss", "val/loss", "train/ema_decay"} <= set(rows[0])
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


DTYPES: list[tuple[bool, torch.dtype]] = []  # (train mode?, dtype of the backbone's output) per forward


class DtypeProbe(pl.Callback):
    """Records the dtype the trainable backbone computes in, at every forward of the run."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        pl_module.backbone.register_forward_hook(lambda module, args, out: DTYPES.append((module.training, out.dtype)))


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)])
def test_precision_on_cpu(precision, dtype, tmp_path, hydra_cleanup):
    """Under bf16-mixed the backbone really runs in bfloat16 (autocast on the CPU), training and validation."""
    DTYPES.clear()
    metrics = train(compose_config("train", [*SHORT, f"trainer.precision={precision}",
                                             "+callbacks.dtype_probe._target_=test_loggers_precision.DtypeProbe"],
                                   tmp_path))
    assert 0 < metrics["train/loss"] < 10
    assert sum(training for training, _ in DTYPES) == 4 and sum(not training for training, _ in DTYPES) == 2
    assert {d for _, d in DTYPES} == {dtype}
