"""FID features for MNIST/Fashion-MNIST: built by train_extractor from the dataset files, a clear error without them."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose_config

from difflab.data.fake_files import write_fake
from difflab.errors import ConfigError
from difflab.metrics import lenet, train_extractor
from difflab.train import train


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_missing_extractor_says_how_to_build_it(name, tmp_path, hydra_cleanup):
    root = write_fake(name, tmp_path / "data")
    cfg = compose_config("train", [f"dataset={name}", f"dataset.root={root}", "metrics=[fid]", "backbone=unet_small"],
                         tmp_path / "run")
    assert cfg.features.name == name and not (lenet.WEIGHTS_DIR / f"{name}_lenet.json").exists()
    with pytest.raises(ConfigError, match=f"python -m difflab.metrics.train_extractor {name} --root <dir>"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_extractor_builds_mnist_features_that_score_a_run(tmp_path, monkeypatch, hydra_cleanup, one_thread):
    root = write_fake("mnist", tmp_path / "data")
    weights = tmp_path / "weights"
    monkeypatch.setitem(train_extractor.RECIPE, "epochs", 2)  # a reduced recipe: the files hold 64 images
    monkeypatch.setattr(train_extractor.write_extractor, "__defaults__", (weights,))
    monkeypatch.setattr(lenet, "WEIGHTS_DIR", weights)
    train_extractor.main(["mnist", "--root", str(root)])
    record = json.loads((weights / "mnist_lenet.json").read_text())
    assert record["architecture"] == {"channels": 1, "image_size": 32, "num_classes": 10, "num_features": 84}
    assert record["train_images"] == 64 and record["test_images"] == 16
    # dataset=mnist with metrics=[fid] now scores FID on those features during training.
    overrides = [
        "dataset=mnist", f"dataset.root={root}", "metrics=[fid]", "metrics.fid.num_samples=8",
        "evaluation.every_n_steps=2", "evaluation.reference.split=val", "evaluation.sampler.steps=2",
        "evaluation.batch_size=8", f"paths.cache_dir={tmp_path / 'cache'}",
        "trainer.max_steps=2", "dataset.batch_size=8", "callbacks.rich_progress_bar=null", "backbone=unet_small",
        "backbone.base_channels=16", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
        "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.sample_grid.every_n_steps=100",
        "sampler.steps=2",
    ]
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    fid = [k for k in metrics if k.startswith("val/fid_mnist-lenet_n8")]
    assert fid and torch.isfinite(torch.tensor(metrics[fid[0]]))
