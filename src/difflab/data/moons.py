"""Two moons (scikit-learn ``make_moons``) as 2-D points, scaled into [-1, 1] or standardised."""

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
SCALINGS = ("box", "standardize")


def to_box(points: torch.Tensor) -> torch.Tensor:
    """make_moons coordinates -> the box scaling's data space (the noiseless moons in [-0.75, 0.75]^2)."""
    center, scale = torch.tensor(MOONS_CENTER), torch.tensor(MOONS_SCALE)
    return (points - center.to(points)) / scale.to(points)


def from_box(points: torch.Tensor) -> torch.Tensor:
    """The box scaling's data space -> make_moons coordinates."""
    center, scale = torch.tensor(MOONS_CENTER), torch.tensor(MOONS_SCALE)
    return points * scale.to(points) + center.to(points)


class MoonsDataModule(ArrayDataModule):
    """``make_moons(num_samples, noise, random_state=data_seed)`` points, label = moon id (0 outer, 1 inner).

    The last ``round(val_fraction * num_samples)`` points (make_moons shuffles them) form the val split.
    The data set depends on ``data_seed`` only, not on the training ``seed`` (which orders the batches).
    Continuous points (no ``num_bins``), 2 classes.

    ``scaling``: ``box`` maps the noiseless moons onto [-0.75, 0.75]^2 (inside [-1, 1]); ``standardize`` gives each
    coordinate zero mean and unit variance over the training split. Sample metrics compare points in the box
    scaling's space whatever the scaling (:meth:`to_metric_space`), so W2 values of both scalings are comparable.
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
        scaling: str = "box",
        **kwargs: Any,
    ) -> None:
        """``kwargs`` go to :class:`ArrayDataModule`."""
        super().__init__(**kwargs)
        check_int("dataset.num_samples", num_samples, 2)
        check_number("dataset.val_fraction", val_fraction, 0.0, 1.0, high_open=True)
        check_number("dataset.noise", noise, 0.0)
        if scaling not in SCALINGS:
            raise ValueError(f"dataset.scaling={scaling!r} is not known; choose one of {list(SCALINGS)}")
        self.num_val = round(val_fraction * num_samples)
        if num_samples - self.num_val < 1:
            raise ValueError(f"dataset.num_samples={num_samples} leaves no training points")
        self.num_samples, self.noise, self.val_fraction, self.data_seed = num_samples, noise, val_fraction, data_seed
        self.scaling = scaling
        self._mean = self._std = None

    def _raw(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = make_moons(n_samples=self.num_samples, noise=self.noise, random_state=self.data_seed)
        return torch.from_numpy(x).float(), torch.from_numpy(y).long()

    def _statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-coordinate mean and standard deviation of the training split in make_moons coordinates."""
        if self._mean is None:
            train = self._raw()[0][: self.num_samples - self.num_val].double()
            self._mean, self._std = train.mean(0).float(), train.std(0, correction=0).float()
        return self._mean, self._std

    def to_data_space(self, points: torch.Tensor) -> torch.Tensor:
        """Map make_moons coordinates to the model's data space (this module's ``scaling``)."""
        if self.scaling == "box":
            return to_box(points)
        mean, std = self._statistics()
        return (points - mean.to(points)) / std.to(points)

    def from_data_space(self, points: torch.Tensor) -> torch.Tensor:
        """Map data-space points (e.g. samples) back to make_moons coordinates, for plots."""
        if self.scaling == "box":
            return from_box(points)
        mean, std = self._statistics()
        return points * std.to(points) + mean.to(points)

    def to_metric_space(self, points: torch.Tensor) -> torch.Tensor:
        """Data-space points in the space the sample metrics use: the box scaling's, whatever this module's."""
        return points if self.scaling == "box" else to_box(self.from_data_space(points))

    def build(self) -> tuple[TensorDataset, TensorDataset]:
        x, y = self._raw()
        x = self.to_data_space(x)
        n_train = self.num_samples - self.num_val
        return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])
