"""DigitsDataModule: fixed stratified 1437/360 split of sklearn's digits in [-1, 1], resizing, Hydra config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from difflab.data import DataFacts, DigitsDataModule, data_facts

CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset" / "digits.yaml"


@pytest.fixture(scope="module")
def dm() -> DigitsDataModule:
    dm = DigitsDataModule(seed=5)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, ...]:
    x, y = load_digits(return_X_y=True)
    return tuple(train_test_split(x, y, test_size=360, stratify=y, random_state=0))


def test_split_sizes_shapes_and_dtypes(dm: DigitsDataModule) -> None:
    x_tr, y_tr = dm.train_dataset.tensors
    x_va, y_va = dm.val_dataset.tensors
    assert x_tr.shape == (1437, 1, 8, 8) and x_va.shape == (360, 1, 8, 8)
    assert dm.data_shape == (1, 8, 8) and dm.channels == 1 and dm.num_classes == 10
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.long


def test_split_is_stratified(dm: DigitsDataModule, reference) -> None:
    _, _, y_tr, y_va = reference
    assert torch.bincount(dm.val_dataset.tensors[1], minlength=10).tolist() == np.bincount(y_va).tolist()
    assert torch.bincount(dm.train_dataset.tensors[1], minlength=10).tolist() == np.bincount(y_tr).tolist()
    _, all_y = load_digits(return_X_y=True)
    expected_val = 360 * np.bincount(all_y) / len(all_y)
    assert np.abs(np.bincount(y_va) - expected_val).max() <= 1  # stratified: proportional to within one


def test_images_and_labels_are_sklearns(dm: DigitsDataModule, reference) -> None:
    x_tr, x_va, y_tr, y_va = reference
    assert torch.equal(dm.val_dataset.tensors[1], torch.from_numpy(y_va).long())
    raw = (dm.train_dataset.tensors[0].reshape(-1, 64) + 1) / 2 * 16  # undo the documented scaling
    assert torch.allclose(raw, torch.from_numpy(x_tr).float(), atol=1e-5)
    # every image carries a label sklearn gives that exact image
    x_all, y_all = load_digits(return_X_y=True)
    labels_of = {}
    for img, lab in zip(x_all.astype(np.int64), y_all):
        labels_of.setdefault(img.tobytes(), set()).add(int(lab))
    for img, lab in zip(raw.round().long().numpy(), dm.train_dataset.tensors[1].tolist()):
        assert lab in labels_of[img.tobytes()]


def test_range(dm: DigitsDataModule) -> None:
    x = torch.cat([dm.train_dataset.tensors[0], dm.val_dataset.tensors[0]])
    assert x.min() == -1.0 and x.max() == 1.0


def test_split_does_not_depend_on_the_training_seed(dm: DigitsDataModule) -> None:
    other = DigitsDataModule(seed=123)
    assert torch.equal(other.real_samples("val"), dm.real_samples("val"))


@pytest.mark.parametrize("size", [4, 16, 32])
def test_resize(dm: DigitsDataModule, size: int) -> None:
    big = DigitsDataModule(image_size=size)
    x = big.real_samples("val")
    assert x.shape == (360, 1, size, size) and big.data_shape == (1, size, size)
    assert x.min() >= -1.0 and x.max() <= 1.0
    # resizing keeps each image's mean brightness
    assert (x.mean(dim=(1, 2, 3)) - dm.real_samples("val").mean(dim=(1, 2, 3))).abs().max() < 0.05


def test_hydra_config_instantiates() -> None:
    cfg = OmegaConf.create({"seed": 3, "dataset": OmegaConf.load(CONF)})  # a plain node of the dataset group
    dm = instantiate(cfg.dataset)
    assert isinstance(dm, DigitsDataModule) and dm.seed == 3 and dm.batch_size == 128
    assert data_facts(dm) == DataFacts((1, 8, 8), num_classes=10, num_bins=17)  # 8x8 images, 10 digits, values 0..16
    assert cfg.dataset.name == dm.name == "digits"
