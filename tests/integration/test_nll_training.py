"""The likelihood bound of a digits model is finite and falls as it trains."""

from __future__ import annotations

import math

from conftest import compose_config
from difflab.callbacks import BitsPerDim
from difflab.train import train


def test_bits_per_dim_falls_during_training(tmp_path, hydra_cleanup, monkeypatch):
    history = []
    original = BitsPerDim.on_train_batch_end

    def record(self, trainer, pl_module, *args):
        original(self, trainer, pl_module, *args)
        history[:] = self.history

    monkeypatch.setattr(BitsPerDim, "on_train_batch_end", record)
    cfg = compose_config("train", [
        "callbacks=nll", "callbacks.nll.every_n_steps=150", "callbacks.nll.stride=20", "callbacks.nll.max_batches=1",
        "objective=improved_ddpm", "trainer.max_steps=450", "callbacks.rich_progress_bar=null", "sampler.steps=5", "metrics=[]",
        "callbacks.sample_grid.every_n_steps=100000", "callbacks.sample_grid.num_samples=4",
    ], tmp_path)
    train(cfg)
    steps, bpd = zip(*history)
    assert steps == (150, 300, 450)
    assert all(math.isfinite(b) and b > 0 for b in bpd)
    assert bpd[-1] < bpd[0], bpd
