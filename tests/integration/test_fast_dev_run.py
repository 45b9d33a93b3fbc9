"""One training and one validation batch through the real entry point, for every dataset."""

from __future__ import annotations

import pytest
from conftest import compose_config

from difflab.train import train

BACKBONE = {"moons": "mlp", "digits": "unet_tiny", "shapes": "unet_small"}


@pytest.mark.parametrize("dataset", sorted(BACKBONE))
def test_fast_dev_run(dataset, tmp_path, hydra_cleanup):
    # the end-of-run evaluation samples in 2 steps (not 20): its 1,000 digits would take most of the time
    cfg = compose_config("train", [f"dataset={dataset}", f"backbone={BACKBONE[dataset]}", "debug=fdr",
                                   "evaluation.sampler.steps=2"], tmp_path)
    metrics = train(cfg)
    assert metrics["train/loss"] > 0 and metrics["val/loss"] > 0
    assert (tmp_path / "samples" / "final.png").is_file()
    assert (tmp_path / "resolved_config.yaml").is_file()
