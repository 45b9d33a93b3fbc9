"""Every data module refuses a bad setting when it is built, with a ValueError naming the dataset.* key."""

from __future__ import annotations

import pytest

from difflab.data import DigitsDataModule, MoonsDataModule, ShapesDataModule

MODULES = {"digits": DigitsDataModule, "moons": MoonsDataModule, "shapes": ShapesDataModule}

# The loader settings every data module shares.
SHARED = [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -1}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"val_batch_size": 0}, "val_batch_size"),
    ({"num_workers": -1}, "num_workers"),
    ({"prefetch_factor": 0}, "prefetch_factor"),
    ({"name": "cifar10"}, "name"),  # a config file that names another dataset than its _target_ builds
]

# The settings of one data module.
OWN = {
    "digits": [({"image_size": 2}, "image_size"), ({"image_size": 0}, "image_size"),
               ({"image_size": True}, "image_size")],
    "moons": [({"val_fraction": 1.0}, "val_fraction"), ({"val_fraction": -0.1}, "val_fraction"),
              ({"noise": -0.1}, "noise"), ({"num_samples": 1}, "num_samples"),
              ({"num_samples": 2, "val_fraction": 0.9}, "num_samples")],
    "shapes": [({"image_size": 7}, "image_size"), ({"channels": 2}, "channels"),
               ({"val_fraction": -0.1}, "val_fraction"), ({"num_samples": 1}, "num_samples"),
               ({"num_samples": 2, "val_fraction": 0.9}, "num_samples")],
}

CASES = [(name, kwargs, key) for name in MODULES for kwargs, key in SHARED + OWN[name]]


@pytest.mark.parametrize("name, kwargs, key", CASES,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in CASES])
def test_bad_config_is_rejected(name: str, kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"^dataset\.{key}="):
        MODULES[name](**kwargs)


@pytest.mark.parametrize("name", MODULES)
def test_the_defaults_and_the_own_name_are_accepted(name: str) -> None:
    module = MODULES[name](name=name)
    assert module.name == name
