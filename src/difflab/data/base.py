"""``ArrayDataModule``: a LightningDataModule over in-memory tensors with a resumable training order, and
``DataFacts``: what a model must know of its data (shape, classes, quantisation), stated by the data module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from difflab.data.sampling import StepBatchSampler
from difflab.utils.checks import check_int

__all__ = ["ArrayDataModule", "DataFacts", "data_facts"]


@dataclass(frozen=True)
class DataFacts:
    """What the model is built for: the shape of one data point (``[C, S, S]`` images, ``[D]`` vectors), the
    number of classes of its labels (None: unlabelled) and the number of quantisation levels of its values (the
    bins of the likelihood's discretised decoder; None: continuous data).

    A data module states them (:func:`data_facts`); a run records them in its config as ``data:`` (see
    :meth:`as_config`), so a checkpoint rebuilds its model without building the data.
    """

    shape: tuple[int, ...]
    num_classes: int | None = None
    num_bins: int | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if not shape:
            raise ValueError("data.shape=[] must be a non-empty list of positive integers")
        for dim in shape:
            check_int("data.shape", dim, 1)
        if self.num_classes is not None:
            check_int("data.num_classes", self.num_classes, 1)
        if self.num_bins is not None:
            check_int("data.num_bins", self.num_bins, 2)
        object.__setattr__(self, "shape", shape)

    def as_config(self) -> dict[str, Any]:
        """``{shape: [...], num_classes: ..., num_bins: ...}``: the ``data`` entry of a run config."""
        return {"shape": list(self.shape), "num_classes": self.num_classes, "num_bins": self.num_bins}

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> DataFacts:
        """The inverse of :meth:`as_config`."""
        return cls(tuple(node["shape"]), node.get("num_classes"), node.get("num_bins"))


def data_facts(data: Any) -> DataFacts:
    """The :class:`DataFacts` of a data module (anything with ``data_shape``, ``num_classes`` and ``num_bins``);
    a ``DataFacts`` is returned as it is."""
    if isinstance(data, DataFacts):
        return data
    return DataFacts(tuple(data.data_shape), getattr(data, "num_classes", None), getattr(data, "num_bins", None))


class ArrayDataModule(pl.LightningDataModule):
    """In-memory (x, y) datasets; training batches come from an infinite :class:`StepBatchSampler`.

    Subclasses set ``name`` and the data facts ``data_shape``, ``num_classes`` (None: unlabelled) and ``num_bins``
    (quantisation levels; None: continuous), and implement :meth:`build`. The facts are stated here only: the
    config holds what a user chooses, and the model is sized from :func:`data_facts`. Training batch ``s``
    depends only on (``seed``, ``s``, rank, world size); ``train_dataloader`` starts at
    ``trainer.global_step * trainer.accumulate_grad_batches``, so resuming from a checkpoint continues the
    exact data order (Lightning 2.6 restores the loop state before it requests the train dataloader; keep
    ``max_epochs=-1`` so ``trainer.estimated_stepping_batches`` never loads it earlier). The training loader
    has no length, i.e. one endless epoch: stop with ``Trainer(max_steps=...)`` and validate with an integer
    ``val_check_interval`` (counted in batches) and ``check_val_every_n_epoch=None``.

    The sampler already shards batches over ranks, so the Trainer must be built with
    ``use_distributed_sampler=False`` (otherwise Lightning raises a TypeError under DDP when it tries to
    inject a DistributedSampler). Every rank validates on the whole val split.

    Loader settings: ``num_workers``, ``pin_memory``, ``persistent_workers`` (None: on when ``num_workers > 0``)
    and ``prefetch_factor`` (None: PyTorch's default; used only with workers).
    """

    name: str = "array"
    data_shape: tuple[int, ...]
    num_classes: int | None = None
    num_bins: int | None = None
    # True: the training sampler yields StepBatch (datasets with per-step augmentation)
    batches_carry_step: bool = False

    def __init__(
        self,
        batch_size: int = 128,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        name: str | None = None,
        persistent_workers: bool | None = None,
        prefetch_factor: int | None = None,
    ) -> None:
        super().__init__()
        if name is not None and name != self.name:
            raise ValueError(f"dataset.name={name!r} but this data module is {self.name!r}")
        self.batch_size = check_int("dataset.batch_size", batch_size, 1)
        self.val_batch_size = None if val_batch_size is None else check_int("dataset.val_batch_size", val_batch_size, 1)
        self.num_workers = check_int("dataset.num_workers", num_workers, 0)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = None if persistent_workers is None else bool(persistent_workers)
        self.prefetch_factor = (None if prefetch_factor is None
                                else check_int("dataset.prefetch_factor", prefetch_factor, 1))
        self.train_dataset: TensorDataset | None = None
        self.val_dataset: TensorDataset | None = None

    def build(self) -> tuple[TensorDataset, TensorDataset]:
        """Create the (train, val) datasets of (x float32 in [-1, 1], y int64 label) pairs."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets (once; later calls are no-ops)."""
        if self.train_dataset is None:
            self.train_dataset, self.val_dataset = self.build()

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.num_workers
        persistent = workers > 0 if self.persistent_workers is None else self.persistent_workers and workers > 0
        kwargs: dict[str, Any] = {"num_workers": workers, "pin_memory": self.pin_memory,
                                  "persistent_workers": persistent}
        if workers > 0 and self.prefetch_factor is not None:
            kwargs["prefetch_factor"] = self.prefetch_factor
        return kwargs

    def train_sampler(self) -> StepBatchSampler:
        """The training batch sampler for the attached trainer's rank, world size and progress."""
        self.setup("fit")
        rank, world_size, start_step = 0, 1, 0
        trainer = self.trainer
        if trainer is not None:
            rank, world_size = trainer.global_rank, trainer.world_size
            # Batches consumed so far; global_step counts optimizer steps (one optimizer assumed).
            start_step = trainer.global_step * trainer.accumulate_grad_batches
        return StepBatchSampler(
            len(self.train_dataset), self.batch_size, seed=self.seed, rank=rank, world_size=world_size,
            start_step=start_step, with_step=self.batches_carry_step,
        )

    def train_dataloader(self) -> DataLoader:
        """Endless training batches, resuming at the attached trainer's progress."""
        sampler = self.train_sampler()
        return DataLoader(self.train_dataset, batch_sampler=sampler, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        """All validation items in order, in batches of ``val_batch_size or batch_size``."""
        self.setup("validate")
        batch_size = self.val_batch_size or self.batch_size
        kwargs = self._loader_kwargs()
        return DataLoader(self.val_dataset, batch_size=batch_size, shuffle=False, drop_last=False, **kwargs)

    def real_samples(self, split: str = "train", n: int | None = None) -> torch.Tensor:
        """The first ``n`` (default: all) data points of ``split`` ("train" or "val") as one tensor."""
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r} must be 'train' or 'val'")
        self.setup()
        x = (self.train_dataset if split == "train" else self.val_dataset).tensors[0]
        if n is not None:
            if not 0 <= n <= len(x):
                raise ValueError(f"asked for n={n} {split} samples but {self.name} has {len(x)}")
            x = x[:n]
        return x
