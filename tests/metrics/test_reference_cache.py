"""Cached reference statistics are derived data: a file that cannot be used is rebuilt with one warning."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import code_running_pickle, compose_config, run_cli
from torch import nn

from difflab.metrics.reference import FORMAT_VERSION, cache_file, load_cached, reference_key, reference_statistics
from difflab.train import train

N, D = 24, 5


class CountingExtractor(nn.Module):
    """A fixed linear map of the flattened image; counts the images it has seen."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.arange(16 * D, dtype=torch.float32).reshape(16, D).cos()
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return x.flatten(1) @ self.weight


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(N, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture
def key() -> dict:
    return reference_key({"name": "toy", "image_size": 4, "batch_size": 8}, "train", "toy", "0" * 64, N)


def compute(images, key, cache_dir):
    extractor = CountingExtractor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = reference_statistics(extractor, images.split(8), key, cache_dir)
    return stats, extractor.seen, [str(w.message) for w in caught]


def test_statistics_are_the_features_mean_and_covariance_and_are_cached(images, key, tmp_path):
    stats, seen, messages = compute(images, key, tmp_path)
    features = (images.flatten(1) @ CountingExtractor().weight).numpy().astype(np.float64)
    assert seen == N and messages == []
    np.testing.assert_allclose(stats.mu.numpy(), features.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.sigma.numpy(), np.cov(features, rowvar=False), rtol=1e-5, atol=1e-5)
    again, seen, messages = compute(images, key, tmp_path)  # read from the file: no image goes through the extractor
    assert seen == 0 and messages == []
    assert (torch.equal(again.mu, stats.mu) and torch.equal(again.sigma, stats.sigma)
            and torch.equal(again.features, stats.features))


def damaged(kind: str, path, marker) -> None:
    """Damage the real cache file at ``path`` in one of the ways a file can become unusable."""
    payload = torch.load(path, weights_only=True)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "old format":
        old_key = {**json.loads(payload["key"]), "format": FORMAT_VERSION - 1}
        torch.save({**payload, "key": json.dumps(old_key, sort_keys=True)}, path)
    elif kind == "missing sigma":
        torch.save({k: v for k, v in payload.items() if k != "sigma"}, path)
    elif kind == "wrong shapes":
        torch.save({**payload, "mu": payload["mu"][:2]}, path)
    elif kind == "not a dict":
        torch.save([payload["mu"]], path)
    elif kind == "would run code":
        path.write_bytes(code_running_pickle(marker, "features"))
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "old format", "missing sigma", "wrong shapes",
                                  "not a dict", "would run code"])
def test_an_unusable_cache_file_is_rebuilt_with_one_warning_naming_it(kind, images, key, tmp_path):
    fresh, _, _ = compute(images, key, tmp_path)
    path = cache_file(tmp_path, key)
    marker = tmp_path / "ran"
    damaged(kind, path, marker)
    with pytest.raises(ValueError):
        load_cached(path, key)
    stats, seen, messages = compute(images, key, tmp_path)
    assert seen == N  # recomputed from the images
    assert len(messages) == 1 and str(path) in messages[0] and "rebuilding" in messages[0], messages
    assert torch.equal(stats.mu, fresh.mu) and torch.equal(stats.sigma, fresh.sigma)
    assert torch.equal(load_cached(path, key).sigma, fresh.sigma)  # the file was rewritten, usable again
    assert not marker.exists()


def test_a_run_whose_cached_statistics_were_truncated_rebuilds_them_and_goes_on(
        tmp_path, monkeypatch, hydra_cleanup, one_thread):
    """Through difflab-train: a truncated cache file gives one warning naming it, not torch's zip traceback (the
    first run, which writes the file, trains in this process)."""
    args = ["dataset.batch_size=16", "backbone.base_channels=16", "backbone.num_groups=8", "backbone.num_res_blocks=1",
            "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
            "callbacks.sample_grid.every_n_steps=100", "callbacks.rich_progress_bar=null", "metrics=[fid]",
            "metrics.fid.num_samples=8", "evaluation.reference.num_samples=16", "evaluation.every_n_steps=2",
            "evaluation.sampler.steps=2", "evaluation.batch_size=8"]
    monkeypatch.setenv("DIFFLAB_ROOT", str(tmp_path))  # as run_cli sets it
    train(compose_config("train", args, tmp_path / "first"))
    (path,) = (tmp_path / "outputs" / "cache").glob("digits_train_*_n16_*.pt")
    path.write_bytes(path.read_bytes()[:1000])
    env = {"PYTHONWARNINGS": "default"}  # as a user's shell has it (run_cli ignores warnings otherwise)
    second = run_cli("train", *args, f"hydra.run.dir={tmp_path / 'second'}", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    mentions = [line for line in second.stderr.splitlines() if str(path) in line]
    assert len(mentions) == 1 and "cannot be used" in mentions[0] and "rebuilding them" in mentions[0], mentions
    torch.load(path, weights_only=True)  # rebuilt


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_a_damaged_user_weights_file_is_refused_with_one_line_naming_it(kind, tmp_path):
    """Feature-extractor weights are the user's (not derived): they are never rebuilt, the run stops."""
    from difflab.metrics import build_feature_extractor
    from difflab.metrics.lenet import WEIGHTS_DIR

    weights = tmp_path / "lenet.pt"
    shipped = (WEIGHTS_DIR / "digits_lenet.pt").read_bytes()
    damaged_bytes = shipped[: len(shipped) // 2] if kind == "truncated" else bytes(range(256)) * 8
    weights.write_bytes(damaged_bytes)
    with pytest.raises(ValueError) as refused:
        build_feature_extractor("digits", str(weights))
    message = str(refused.value)
    assert message.startswith(f"features.weights_path={str(weights)!r} is not a loadable digits LeNet state dict (")
    assert "\n" not in message and weights.read_bytes() == damaged_bytes  # left as it was
