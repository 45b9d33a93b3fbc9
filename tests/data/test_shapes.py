"""ShapesDataModule: circles (0) and squares (1), inside the frame, seeded by data_seed, Hydra config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from difflab.data import DataFacts, ShapesDataModule, data_facts

CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset" / "shapes.yaml"


@pytest.fixture(scope="module")
def dm() -> ShapesDataModule:
    dm = ShapesDataModule()
    dm.setup("fit")
    return dm


def all_xy(dm: ShapesDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.cat([a, b]) for a, b in zip(dm.train_dataset.tensors, dm.val_dataset.tensors))


def test_counts_shapes_and_balance(dm: ShapesDataModule) -> None:
    x_tr, y_tr = dm.train_dataset.tensors
    x_va, y_va = dm.val_dataset.tensors
    assert x_tr.shape == (3686, 1, 16, 16) and x_va.shape == (410, 1, 16, 16) and dm.data_shape == (1, 16, 16)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.long
    assert set(torch.cat([y_tr, y_va]).tolist()) == {0, 1}
    for y in (y_tr, y_va):
        assert abs(y.float().mean().item() - 0.5) < 0.05  # within 10% of balanced


def fill_ratio(x: torch.Tensor) -> torch.Tensor:
    """Area / (widest row chord * widest column chord): 1 for an axis-aligned square, pi/4 for a disc."""
    cover = (x[:, 0] + 1) / 2
    return cover.sum(dim=(1, 2)) / (cover.sum(dim=2).amax(dim=1) * cover.sum(dim=1).amax(dim=1))


def test_circles_and_squares_are_what_the_labels_say(dm: ShapesDataModule) -> None:
    x, y = all_xy(dm)
    ratio = fill_ratio(x)
    assert ratio[y == 1].min() > 0.98
    assert ratio[y == 0].max() < 0.88
    assert abs(ratio[y == 0].mean().item() - math.pi / 4) < 0.03


def test_shapes_are_inside_the_frame(dm: ShapesDataModule) -> None:
    x, _ = all_xy(dm)
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    assert (border == -1.0).all()  # the one-pixel border is background
    assert x.min() == -1.0 and x.max() <= 1.0
    assert (x.amax(dim=(1, 2, 3)) == 1.0).all()  # every image has a fully covered pixel: no empty frames
    area = ((x + 1) / 2).sum(dim=(1, 2, 3))
    assert area.min() > 0.15**2 * 16**2 * math.pi * 0.9  # at least the smallest circle's area


def test_determinism_by_data_seed(dm: ShapesDataModule) -> None:
    same = ShapesDataModule(seed=99)  # the training seed does not change the images
    assert torch.equal(same.real_samples("train"), dm.real_samples("train"))
    other = ShapesDataModule(data_seed=1)
    assert not torch.equal(other.real_samples("train"), dm.real_samples("train"))


def test_three_channels_give_coloured_shapes() -> None:
    dm = ShapesDataModule(channels=3, num_samples=256, image_size=8)
    x = dm.real_samples("train")
    assert x.shape == (230, 3, 8, 8) and dm.data_shape == (3, 8, 8)
    assert x.min() == -1.0 and x.max() <= 1.0
    cover = (x + 1) / 2
    assert torch.allclose(cover.amax(dim=(2, 3)).amax(dim=1), torch.ones(230))  # brightest channel reaches 1
    colour_spread = (cover.amax(dim=(2, 3)).amax(dim=1) - cover.amax(dim=(2, 3)).amin(dim=1))
    assert (colour_spread > 0.05).float().mean() > 0.8  # mostly not grey


def test_hydra_config_instantiates() -> None:
    cfg = OmegaConf.create({"seed": 3, "dataset": OmegaConf.load(CONF)})  # a plain node of the dataset group
    dm = instantiate(cfg.dataset)
    assert isinstance(dm, ShapesDataModule) and dm.seed == 3 and dm.batch_size == 128
    assert (cfg.dataset.channels, cfg.dataset.image_size) == (1, 16)  # the user's choices
    assert data_facts(dm) == DataFacts((1, 16, 16), num_classes=2, num_bins=None)  # circles and squares, anti-aliased
    assert cfg.dataset.name == dm.name == "shapes"
