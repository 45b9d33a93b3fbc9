"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn) as [1, S, S] images."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from difflab.data.base import ArrayDataModule
from difflab.utils.checks import check_int

__all__ = ["DigitsDataModule", "DIGITS_NUM_VAL", "DIGITS_SPLIT_SEED"]

DIGITS_NUM_VAL = 360  # 1,437 train / 360 val
DIGITS_SPLIT_SEED = 0  # the split never depends on the training seed


class DigitsDataModule(ArrayDataModule):
    """``load_digits()`` scaled from 0..16 to [-1, 1] (x / 16 * 2 - 1), label = digit.

    Fixed stratified split: ``train_test_split(X, y, test_size=360, stratify=y, random_state=0)``.
    With ``image_size != 8`` images are resized (bilinear, antialiased) and clamped to [-1, 1].
    One channel, 10 classes; the pixel values 0..16 are 17 levels (``num_bins``, the likelihood's decoder).
    """

    name = "digits"
    channels = 1
    num_classes = 10
    num_bins = 17

    def __init__(self, image_size: int = 8, **kwargs: Any) -> None:
        """``kwargs`` go to :class:`ArrayDataModule`."""
        super().__init__(**kwargs)
        self.image_size = check_int("dataset.image_size", image_size, 4, note="the digits are 8x8")

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return (1, self.image_size, self.image_size)

    def build(self) -> tuple[TensorDataset, TensorDataset]:
        x, y = load_digits(return_X_y=True)
        x_tr, x_va, y_tr, y_va = train_test_split(
            x, y, test_size=DIGITS_NUM_VAL, stratify=y, random_state=DIGITS_SPLIT_SEED
        )
        return self._to_dataset(x_tr, y_tr), self._to_dataset(x_va, y_va)

    def _to_dataset(self, x: Any, y: Any) -> TensorDataset:
        images = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0 * 2.0 - 1.0
        if self.image_size != 8:
            size = (self.image_size, self.image_size)
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
            images = images.clamp(-1.0, 1.0)
        return TensorDataset(images.contiguous(), torch.as_tensor(y, dtype=torch.long))
