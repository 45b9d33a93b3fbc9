"""Every file in conf/ composes, and everything it names instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import compose_config
from hydra.utils import instantiate

from difflab.builders import build_datamodule, build_module, build_sampler, instantiate_all
from difflab.callbacks import monitor_for
from difflab.configs import CONFIG_DIR
from difflab.data.fake_files import write_fake

CONF = Path(CONFIG_DIR)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# Groups whose options are swapped on their own into the default config; the others are checked below.
SWAPPABLE = ["dataset", "backbone", "schedule", "objective", "sampler", "optim", "trainer", "logger", "callbacks",
             "debug", "experiment", "metrics", "features", "scoring", "hparams_search"]
CASES = [(g, o) for g in SWAPPABLE for o in group_options(g)]

# A backbone needs data of its kind: the MLP takes 2-D points, U-Nets take images.
DATA_FOR_BACKBONE = {"mlp": "dataset=moons"}
DATA_FOR_IMAGE_BACKBONE = {"unet_ddpm_cifar10": ["dataset=shapes", "dataset.image_size=32", "dataset.channels=3"]}


# Datasets read from files: each case reads tiny files in the real format (tests/data/test_real_datasets.py trains on
# them).
FILE_DATASETS = {"mnist": [], "fashion_mnist": [], "cifar10": ["dataset.verify_md5=false"], "image_folder": []}
FILE_DATASET_OF = {("dataset", name): name for name in FILE_DATASETS} | {("experiment", "ddpm_cifar10"): "cifar10"}


def file_data_overrides(group: str, option: str, root: Path) -> list[str]:
    """``dataset.root`` pointing at tiny files written under ``root`` for cases whose dataset is read from files."""
    name = FILE_DATASET_OF.get((group, option))
    if name is None:
        return []
    return [f"dataset.root={write_fake(name, root / name)}", *FILE_DATASETS[name]]


def overrides_for(group: str, option: str) -> list[str]:
    overrides = [f"{group}={option}"]
    if group == "backbone":
        if option in DATA_FOR_BACKBONE:
            overrides.append(DATA_FOR_BACKBONE[option])
        overrides += DATA_FOR_IMAGE_BACKBONE.get(option, [])
    if (group, option) == ("schedule", "moons_guide"):
        overrides.append("sampler.steps=9")  # a 9-step schedule cannot run the default 50-step sampler
    if (group, option) in (("metrics", "two_d"), ("scoring", "moons")):
        overrides += ["dataset=moons", "backbone=mlp"]  # W2 between point sets is for 2-D data
    if (group, option) in (("features", "mnist"), ("features", "fashion_mnist")):
        # their weights are built from the dataset files (not shipped): composes without them
        overrides.append("metrics=[]")
    if (group, option) == ("features", "inception"):
        overrides.append("metrics=[]")  # composes without the weights; tests/integration/test_evaluation.py runs it
    if group == "dataset":
        small = {"moons": "backbone=mlp"} | dict.fromkeys(["shapes", *FILE_DATASETS], "backbone=unet_small")
        overrides.append(small.get(option, "backbone=unet_tiny"))
    if (group, option) == ("experiment", "ddpm_cifar10"):
        # a GPU preset scored on Inception features: built here without either
        overrides += ["trainer=cpu", "metrics=[]"]
    return overrides


def test_every_group_file_is_covered():
    groups = {p.name for p in CONF.iterdir() if p.is_dir()}
    assert groups - set(SWAPPABLE) == {"paths", "hydra"}, "a new config group needs a composition test"


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_instantiates(group, option, tmp_path, hydra_cleanup, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config("train", overrides_for(group, option) + file_data_overrides(group, option, tmp_path), tmp_path)
    datamodule = build_datamodule(cfg)
    assert isinstance(datamodule, pl.LightningDataModule)
    module = build_module(cfg, datamodule)
    sampler = build_sampler(cfg.sampler, module.schedule)
    assert sampler.timesteps.max() < module.schedule.num_timesteps
    for obj in instantiate_all(cfg.get("callbacks")) + instantiate_all(cfg.get("logger")):
        assert isinstance(obj, (pl.Callback, pl.loggers.Logger))
    if group == "metrics":
        metric = {"fid_50k": "fid"}.get(option, option)  # fid_50k is fid with n = 50,000
        assert list(cfg.metrics) == [metric]
        expected = {"fid": "min", "kid": "min", "two_d": "min", "inception_score": "max"}.get(metric)
        monitor = monitor_for(cfg.metrics, cfg.get("features"), cfg.evaluation)
        assert (monitor is None) == (expected is None)
        if expected:
            assert monitor.name.startswith(f"val/{metric}_") and monitor.mode == expected
    if group == "trainer" and cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        return  # a GPU trainer composes here; building it needs a GPU
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert isinstance(trainer, pl.Trainer)
    # The network accepts the data's shape.
    x = torch.zeros(2, *datamodule.data_shape)
    out = module.backbone(x, torch.zeros(2, dtype=torch.long))
    assert out.shape[1] == module.objective.output_channels_factor * x.shape[1] and out.shape[2:] == x.shape[2:]


def test_sample_config_composes(tmp_path, hydra_cleanup):
    cfg = compose_config("sample", ["ckpt_path=/some/file.ckpt", "sampler=ddpm"], tmp_path)
    assert cfg.n == 64 and cfg.sampler.name == "ddpm"
