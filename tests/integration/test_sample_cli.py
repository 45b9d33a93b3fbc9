"""difflab-sample rebuilds the model from a checkpoint alone; samples do not depend on the batch size."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config, run_cli

from difflab.builders import build_module
from difflab.data import DataFacts
from difflab.errors import ConfigError
from difflab.sample import sample
from difflab.samplers import make_sampler
from difflab.train import train


def test_sample_from_checkpoint(tmp_path, hydra_cleanup, one_thread):
    """difflab-sample draws from the checkpoint alone; the same draw in batches of 7 (in this process) is equal."""
    run = tmp_path / "run"
    train(compose_config("train", ["dataset=moons", "backbone=mlp", "trainer.max_steps=3",
                                   "callbacks.rich_progress_bar=null",
                                   "callbacks.model_checkpoint.every_n_train_steps=3", "sampler.steps=4"], run))
    draw = [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "n=20", "sampler=ddpm", "sampler.steps=10"]
    out = tmp_path / "samples_bs20"
    result = run_cli("sample", *draw, "batch_size=20", f"hydra.run.dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "10 model evaluations" in result.stdout
    assert (out / "samples.png").is_file()
    whole = torch.load(out / "samples.pt", weights_only=True)
    assert whole.shape == (20, 2)
    in_batches = torch.load(sample(compose_config("sample", [*draw, "batch_size=7"], tmp_path / "samples_bs7")),
                            weights_only=True)
    torch.testing.assert_close(in_batches, whole, rtol=1e-5, atol=1e-5)  # batched matmuls round differently


def test_sample_rejects_a_file_that_is_not_a_checkpoint(tmp_path, hydra_cleanup):
    """The ConfigError difflab-sample prints as its one line (exit status 2), raised before any sample is drawn."""
    bogus = tmp_path / "bogus.ckpt"
    torch.save({"state_dict": {}}, bogus)
    with pytest.raises(ConfigError, match="is not a difflab checkpoint"):
        sample(compose_config("sample", [f"ckpt_path={bogus}"], tmp_path / "out"))
    assert not (tmp_path / "out" / "samples.pt").exists()


@pytest.mark.parametrize("sampler_name", ["ddpm", "dpmpp_2m"])
def test_the_same_seed_gives_the_same_samples_with_batch_sizes_1_7_and_64(sampler_name, tmp_path, hydra_cleanup):
    """Sample i's noise (initial and per step) depends on (seed, i) only; the batch it is drawn in does not matter."""
    cfg = compose_config("train", ["conditioning.enabled=true", "backbone.base_channels=16", "backbone.num_groups=8"],
                         tmp_path)
    torch.manual_seed(0)
    module = build_module(cfg, DataFacts((1, 8, 8), num_classes=10, num_bins=17)).eval()
    sampler = make_sampler(sampler_name, schedule=module.schedule, steps=10)

    def draw(batch_size: int) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([module.sample(sampler, min(batch_size, 64 - i), seed=5, start_index=i, guidance_scale=2.0)
                              for i in range(0, 64, batch_size)])

    whole = draw(64)
    for batch_size in (1, 7):
        # batched convolutions round differently
        torch.testing.assert_close(draw(batch_size), whole, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        other_seed = module.sample(sampler, 64, seed=6, guidance_scale=2.0)
    assert (other_seed - whole).abs().max() > 0.1
