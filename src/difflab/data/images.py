"""8-bit image datasets held in memory as uint8, converted to [-1, 1] per batch, with resumable random flips."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from difflab.data.base import ArrayDataModule
from difflab.data.sampling import StepBatch
from difflab.utils.seeding import Stream, derive_seed

__all__ = ["ImageDataModule", "UInt8ImageDataset", "flip_mask", "to_unit_range"]



def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) -> float32 in [-1, 1] (x / 127.5 - 1)."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


def flip_mask(seed: int, step: int, rank: int, size: int) -> torch.Tensor:
    """Which positions of this rank's training batch at ``step`` are mirrored: bool [size], probability 1/2.

    A pure function of (seed, step, rank, position): no global RNG state is read or changed.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, Stream.FLIP, step, rank))
    return torch.rand(size, generator=generator) < 0.5


class UInt8ImageDataset(Dataset):
    """(image float32 [C, H, W] in [-1, 1], label int64) pairs over uint8 images [N, C, H, W].

    With ``hflip`` and ``seed``, a :class:`StepBatch` of indices (what the training sampler yields) is returned
    with the images chosen by :func:`flip_mask` mirrored left-right; plain indices are never flipped (validation,
    reference statistics). ``tensors`` mimics ``TensorDataset.tensors`` (all images as float, labels).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, hflip: bool = False, seed: int = 0) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {list(images.shape)}")
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape [{len(images)}], got {list(labels.shape)}")
        self.images = images.contiguous()
        self.labels = labels.to(torch.long)
        self.hflip = hflip
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_unit_range(self.images[index]), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A batch at once (DataLoader fetches with this): one gather, one conversion, the step's flips."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        x = to_unit_range(self.images[index])
        if self.hflip and isinstance(indices, StepBatch):
            flips = flip_mask(self.seed, indices.step, indices.rank, len(index))
            x[flips] = x[flips].flip(-1)
        y = self.labels[index]
        return list(zip(x.unbind(0), y.unbind(0)))

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(all images as float32 [N, C, H, W] in [-1, 1], labels [N])."""
        return to_unit_range(self.images), self.labels


class ImageDataModule(ArrayDataModule):
    """An :class:`ArrayDataModule` over uint8 images; subclasses implement :meth:`load` -> uint8 splits.

    ``hflip``: mirror each training image with probability 1/2, decided by (seed, step, rank, position) so a
    resumed run sees the same batches. Validation batches and ``real_samples`` are never flipped.
    Subclasses set ``channels`` and ``image_size`` (the shape ``[channels, image_size, image_size]``) and
    ``num_classes``; 8-bit pixels are 256 levels (``num_bins``).
    """

    batches_carry_step = True
    channels: int
    image_size: int
    num_bins = 256

    def __init__(self, hflip: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(hflip, bool):
            raise ValueError(f"dataset.hflip={hflip!r} must be true or false")
        self.hflip = hflip

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """((train uint8 images [N, C, S, S], labels), (val images, labels))."""
        raise NotImplementedError

    def build(self) -> tuple[UInt8ImageDataset, UInt8ImageDataset]:  # type: ignore[override]
        (x_tr, y_tr), (x_va, y_va) = self.load()
        return UInt8ImageDataset(x_tr, y_tr, self.hflip, self.seed), UInt8ImageDataset(x_va, y_va, False, self.seed)

    def real_samples(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The first ``n`` (default: all) images of ``split`` as float32 in [-1, 1], never flipped."""
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r} must be 'train' or 'val'")
        self.setup()
        images = (self.train_dataset if split == "train" else self.val_dataset).images
        if n is not None:
            if not 0 <= n <= len(images):
                raise ValueError(f"asked for n={n} {split} samples but {self.name} has {len(images)}")
            images = images[:n]
        return to_unit_range(images)
