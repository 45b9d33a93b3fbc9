"""experiment=ddpm_cifar10: the DDPM paper's CIFAR-10 preset composes as specified and runs on tiny CIFAR-10 files."""

from __future__ import annotations

from conftest import compose_config

from difflab.callbacks import monitor_for
from difflab.data.fake_files import write_fake
from difflab.train import train


def test_ddpm_cifar10_experiment_runs_fast_dev_run(tmp_path, hydra_cleanup):
    root = write_fake("cifar10", tmp_path / "data")
    cfg = compose_config("train", ["experiment=ddpm_cifar10"], tmp_path / "composed")
    assert cfg.dataset.name == "cifar10" and cfg.dataset.hflip and cfg.dataset.batch_size == 128
    assert cfg.backbone.base_channels == 128 and cfg.backbone.dropout == 0.1
    assert (cfg.schedule.name == "linear" and cfg.schedule.num_timesteps == 1000
            and cfg.objective.prediction_type == "eps")
    assert cfg.optim.optimizer.lr == 2e-4 and cfg.optim.warmup_steps == 5000
    assert cfg.ema.decay == 0.9999 and cfg.ema.power is None and cfg.trainer.gradient_clip_val == 1.0
    assert cfg.trainer.max_steps == 800_000 and cfg.trainer.accelerator == "gpu"
    assert list(cfg.metrics) == ["fid"] and cfg.metrics.fid.num_samples == 50_000 and cfg.features.name == "inception"
    assert cfg.evaluation.reference.split == "train" and cfg.evaluation.every_n_steps == 50_000
    # the paper's ancestral sampler
    assert cfg.evaluation.sampler.name == "ddpm" and cfg.evaluation.sampler.steps == 1000
    assert monitor_for(cfg.metrics, cfg.features, cfg.evaluation).name == "val/fid_inception_n50000_ddpm1000"
    overrides = ["experiment=ddpm_cifar10", "trainer=cpu", "metrics=[]", f"dataset.root={root}",
                 "dataset.verify_md5=false", "dataset.batch_size=4", "trainer.fast_dev_run=true",
                 "callbacks.rich_progress_bar=null",
                 "callbacks.sample_grid.num_samples=2", "sampler.steps=2"]
    train(compose_config("train", overrides, tmp_path / "run"))
    assert list((tmp_path / "run" / "samples").glob("*.png"))
