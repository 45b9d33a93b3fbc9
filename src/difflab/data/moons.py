"""Two moons (scikit-learn ``make_moons``) as 2-D points in [-1, 1]."""

from __future__ import annotations

from typing import Any

import torch
from sklearn.datasets import make_moons
from torch.utils.data import TensorDataset

from difflab.data.base import ArrayDataModule
from difflab.utils.checks import check_int, check_number

__all__ = ["MoonsDataModule"]

# make_moons puts the outer moon in x in [-1, 1], y in [0, 1] and the inner one in x in [0, 2], y in [-0.5, 0.5].
# (p - CENTER) / SCALE maps that noiseless box [-1, 2] x [-0.5, 1] onto [-0.75, 0.75]^2, leaving a margin of
# 0.5 (x) / 0.25 (y) original units for the noise: with the default noise 0.05 that is a 5-sigma margin.
# Points are not clipped, so much larger noise can leave [-1, 1].
MOONS_CENTER = (0.5, 0.25)
MOONS_SCALE = (2.0, 1.0)


class MoonsDataModule(ArrayDataModule):
    """``make_moons(num_samples, noise, random_state=data_seed)`` points, label = moon id (0 outer, 1 inner).

    The last ``round(val_fraction * num_samples)`` points (make_moons shuffles them) form the val split.
    The data set depends on ``data_seed`` only, not on the training ``seed`` (which orders the batches).
    Continuous points (no ``num_bins``), 2 classes.
    """

    name = "moons"
    data_shape = (2,)
    num_classes = 2
    num_bins = None

    def __init__(
        self,
        num_samples: int = 10000,
        noise: float = 0.05,
        val_fraction: float = 0.1,
        data_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """``kwargs`` go to :class:`ArrayDataModule`."""
        super().__init__(**kwargs)
        check_int("dataset.num_samples", num_samples, 2)
        check_number("dataset.val_fraction", val_fraction, 0.0, 1.0, high_open=True)
        check_number("dataset.noise", noise, 0.0)
        self.num_val = round(val_fraction * num_samples)
        if num_samples - self.num_val < 1:
            raise ValueError(f"dataset.num_samples={num_samples} leaves no training points")
        self.num_samples, self.noise, self.val_fraction, self.data_seed = num_samples, noise, val_fraction, data_seed

    @staticmethod
    def to_data_space(points: torch.Tensor) -> torch.Tensor:
        """Map make_moons coordinates to the model's data space."""
        center, scale = torch.tensor(MOONS_CENTER), torch.tensor(MOONS_SCALE)
        return (points - center.to(points)) / scale.to(points)

    @staticmethod
    def from_data_space(points: torch.Tensor) -> torch.Tensor:
        """Map data-space points (e.g. samples) back to make_moons coordinates, for plots."""
        center, scale = torch.tensor(MOONS_CENTER), torch.tensor(MOONS_SCALE)
        return points * scale.to(points) + center.to(points)

    def build(self) -> tuple[TensorDataset, TensorDataset]:
        x, y = make_moons(n_samples=self.num_samples, noise=self.noise, random_state=self.data_seed)
        x = self.to_data_space(torch.from_numpy(x).float())
        y = torch.from_numpy(y).long()
        n_train = self.num_samples - self.num_val
        return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])
