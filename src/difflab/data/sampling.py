"""A resumable, infinite batch sampler: batch indices are a pure function of (seed, step, rank, world_size)."""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

from difflab.utils.seeding import Stream, derive_seed

__all__ = ["StepBatch", "StepBatchSampler"]



class StepBatch(list):
    """A list of dataset indices that also says which global ``step`` and ``rank`` it belongs to.

    Datasets whose ``__getitems__`` reads these (e.g. to seed per-batch random flips) stay a pure function of
    (seed, step, rank, position), so a resumed run sees exactly the batches of an uninterrupted one.
    """

    def __init__(self, indices: list[int], step: int, rank: int) -> None:
        super().__init__(indices)
        self.step = step
        self.rank = rank

    def __reduce__(self) -> tuple:  # pickled to DataLoader workers with its step and rank
        return (StepBatch, (list(self), self.step, self.rank))


class StepBatchSampler(Sampler[list[int]]):
    """Yield batches of dataset indices forever, starting at ``start_step``.

    Global step ``s`` draws ``batch_size * world_size`` indices: chunk ``s % steps_per_epoch`` of epoch
    ``s // steps_per_epoch``'s permutation (seeded by ``derive_seed(seed, Stream.DATA_ORDER, epoch)``, the same on
    every rank); rank ``r`` takes the ``r``-th contiguous block of ``batch_size`` indices of that chunk. The remainder
    ``num_items % (batch_size * world_size)`` of each epoch's permutation is dropped.

    A run resumed with ``start_step=N`` therefore sees exactly the batches an uninterrupted run sees at
    steps N, N+1, ... There is deliberately no ``__len__``: DataLoaders built on this sampler are unsized,
    which Lightning treats as an epoch that never ends (stop training with ``Trainer(max_steps=...)``).
    With ``with_step=True`` each batch is a :class:`StepBatch` (a list carrying its step and rank).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        shuffle: bool = True,
        with_step: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        if start_step < 0:
            raise ValueError(f"start_step={start_step} must be >= 0")
        global_batch = batch_size * world_size
        if num_items < global_batch:
            raise ValueError(
                f"dataset size {num_items} is smaller than one global batch: batch size {batch_size} "
                f"x world size {world_size} = {global_batch}; lower dataset.batch_size or use more data"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.shuffle = shuffle
        self.with_step = with_step
        self.steps_per_epoch = num_items // global_batch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The index order of ``epoch`` (a permutation of ``range(num_items)``; identity without shuffle)."""
        if not self.shuffle:
            return torch.arange(self.num_items)
        g = torch.Generator().manual_seed(derive_seed(self.seed, Stream.DATA_ORDER, epoch))
        return torch.randperm(self.num_items, generator=g)

    def batch_at(self, step: int, order: torch.Tensor | None = None) -> list[int]:
        """This rank's indices at global ``step`` (``order``: that step's epoch order, if already computed)."""
        epoch, chunk = divmod(step, self.steps_per_epoch)
        if order is None:
            order = self.epoch_order(epoch)
        start = (chunk * self.world_size + self.rank) * self.batch_size
        return order[start : start + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step, epoch, order = self.start_step, -1, None
        while True:
            if step // self.steps_per_epoch != epoch:
                epoch = step // self.steps_per_epoch
                order = self.epoch_order(epoch)
            batch = self.batch_at(step, order)
            yield StepBatch(batch, step, self.rank) if self.with_step else batch
            step += 1
