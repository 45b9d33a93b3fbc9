"""The likelihood bound of a digits model (metrics=[nll]) is finite and falls as it trains."""

from __future__ import annotations

import json
import math

import pytest
from conftest import compose_config

from difflab.train import train


@pytest.mark.slow  # ~3 min; tests/diffusion/test_vlb_nll.py checks the bound against the exact NLL in the default run
def test_bits_per_dim_falls_during_training(tmp_path, hydra_cleanup):
    cfg = compose_config("train", [
        "metrics=[nll]", "metrics.nll.stride=20", "metrics.nll.max_batches=1", "evaluation.every_n_steps=150",
        "objective=improved_ddpm", "trainer.max_steps=450", "callbacks.rich_progress_bar=null", "sampler.steps=5",
        "callbacks.sample_grid.every_n_steps=100000", "callbacks.sample_grid.num_samples=4",
    ], tmp_path)
    train(cfg)
    history = json.loads((tmp_path / "evaluation.json").read_text())["history"]  # every evaluation's values
    steps = [step for step, _ in history]
    assert all(list(values)[0] == "val/nll_bpd_n128_stride20" for _, values in history)  # one val batch of 128
    bpd = [values["val/nll_bpd_n128_stride20"] for _, values in history]
    assert steps == [150, 300, 450]
    assert all(math.isfinite(b) and b > 0 for b in bpd)
    assert bpd[-1] < bpd[0], bpd
