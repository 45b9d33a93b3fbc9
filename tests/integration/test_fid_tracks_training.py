"""The main job's FID falls as it trains and ends near the real-data floor (slow: it is the main job, ~3 minutes)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose_config

from difflab.data import DigitsDataModule
from difflab.metrics import build_feature_extractor, frechet_distance, gaussian_statistics
from difflab.train import train


@pytest.mark.slow
def test_fid_of_the_main_job_falls_from_half_trained_to_near_the_floor(tmp_path, hydra_cleanup):
    run = tmp_path / "run"
    train(compose_config("train", ["callbacks.rich_progress_bar=null", f"paths.root_dir={tmp_path}"], run))
    history = json.loads((run / "evaluation.json").read_text())["history"]
    fid = {step: values["val/fid_digits-lenet_n1000_dpmpp2m20"] for step, values in history}
    assert sorted(fid) == [600, 1200, 1800]

    data = DigitsDataModule()
    data.setup()
    (x_train, _), (x_val, _) = data.train_dataset.tensors, data.val_dataset.tensors
    extractor = build_feature_extractor("digits")
    with torch.no_grad():
        reference = gaussian_statistics(extractor(x_train))
        bootstrap = x_val[torch.randint(len(x_val), (1000,), generator=torch.Generator().manual_seed(0))]
        floor = frechet_distance(*gaussian_statistics(extractor(bootstrap)), *reference)  # real images at the same n
    assert fid[600] > fid[1200] > fid[1800]  # a third and two thirds of the way score clearly worse
    assert fid[600] > 2 * fid[1800]
    assert fid[1800] <= 10 and fid[1800] < 2 * floor, (fid, floor)
