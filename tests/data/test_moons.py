"""MoonsDataModule: make_moons points mapped into [-1, 1], labels = moon id, invertible map, Hydra config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.datasets import make_moons

from difflab.data import DataFacts, MoonsDataModule, data_facts

CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset" / "moons.yaml"


@pytest.fixture(scope="module")
def dm() -> MoonsDataModule:
    dm = MoonsDataModule()
    dm.setup("fit")
    return dm


def test_shapes_and_range(dm: MoonsDataModule) -> None:
    x_tr, y_tr = dm.train_dataset.tensors
    x_va, y_va = dm.val_dataset.tensors
    assert x_tr.shape == (9000, 2) and x_va.shape == (1000, 2) and dm.data_shape == (2,)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.long
    x = torch.cat([x_tr, x_va])
    assert x.abs().max() < 1.0
    assert x.abs().amax(0).min() > 0.6  # both coordinates use most of [-1, 1]


def test_labels_are_the_moon_and_balanced(dm: MoonsDataModule) -> None:
    x = dm.from_data_space(torch.cat([dm.train_dataset.tensors[0], dm.val_dataset.tensors[0]]))
    y = torch.cat([dm.train_dataset.tensors[1], dm.val_dataset.tensors[1]])
    assert torch.bincount(y).tolist() == [5000, 5000]
    assert 0.45 < dm.train_dataset.tensors[1].float().mean() < 0.55
    # make_moons geometry: moon 0 is the upper half of the unit circle about (0, 0), moon 1 the lower half of
    # the unit circle about (1, 0.5); noise 0.05 keeps points within ~0.25 of their own arc.
    r0 = (x - torch.tensor([0.0, 0.0])).norm(dim=1)
    r1 = (x - torch.tensor([1.0, 0.5])).norm(dim=1)
    assert (r0[y == 0] - 1).abs().max() < 0.25 and (x[y == 0, 1] > -0.25).all()
    assert (r1[y == 1] - 1).abs().max() < 0.25 and (x[y == 1, 1] < 0.75).all()


def test_matches_sklearn_and_round_trips(dm: MoonsDataModule) -> None:
    raw, labels = make_moons(n_samples=10000, noise=0.05, random_state=0)
    raw = torch.from_numpy(raw).float()
    got = dm.from_data_space(dm.real_samples("train"))
    assert torch.allclose(got, raw[:9000], atol=1e-5)
    assert torch.equal(dm.val_dataset.tensors[1], torch.from_numpy(labels[9000:]).long())
    assert torch.allclose(dm.to_data_space(dm.from_data_space(dm.real_samples("val"))), dm.real_samples("val"))


def test_data_does_not_depend_on_the_training_seed() -> None:
    a, b = MoonsDataModule(seed=1, num_samples=200), MoonsDataModule(seed=2, num_samples=200)
    assert torch.equal(a.real_samples("train"), b.real_samples("train"))
    c = MoonsDataModule(data_seed=1, num_samples=200)
    assert not torch.equal(a.real_samples("train"), c.real_samples("train"))


def test_hydra_config_instantiates() -> None:
    cfg = OmegaConf.create({"seed": 3, "dataset": OmegaConf.load(CONF)})  # a plain node of the dataset group
    dm = instantiate(cfg.dataset)
    assert isinstance(dm, MoonsDataModule) and dm.seed == 3 and dm.batch_size == 512
    assert data_facts(dm) == DataFacts((2,), num_classes=2, num_bins=None)  # continuous 2-D points, two moons
    assert cfg.dataset.name == dm.name == "moons"


def test_standardize_gives_zero_mean_unit_variance_over_the_training_split() -> None:
    dm = MoonsDataModule(scaling="standardize")
    x = dm.real_samples("train").double()
    assert torch.allclose(x.mean(0), torch.zeros(2, dtype=torch.double), atol=1e-6)
    assert torch.allclose(x.std(0, correction=0), torch.ones(2, dtype=torch.double), atol=1e-6)
    raw = torch.from_numpy(make_moons(n_samples=10000, noise=0.05, random_state=0)[0])
    mean, std = raw[:9000].mean(0), raw[:9000].std(0, correction=0)
    assert torch.allclose(dm.real_samples("val").double(), ((raw[9000:] - mean) / std), atol=1e-5)
    assert torch.allclose(dm.from_data_space(dm.real_samples("val")).double(), raw[9000:], atol=1e-5)


def test_metrics_see_both_scalings_in_the_box_space() -> None:
    box, standard = MoonsDataModule(num_samples=500), MoonsDataModule(num_samples=500, scaling="standardize")
    assert torch.equal(box.to_metric_space(box.real_samples("val")), box.real_samples("val"))
    assert torch.allclose(standard.to_metric_space(standard.real_samples("val")), box.real_samples("val"), atol=1e-5)


def test_unknown_scaling_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"dataset.scaling='unit'.*\['box', 'standardize'\]"):
        MoonsDataModule(scaling="unit")
