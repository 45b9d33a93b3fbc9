"""A progress bar that counts optimizer steps out of ``trainer.max_steps``."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

__all__ = ["StepProgressBar"]


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, counting optimizer steps (``Step 120/1800``) instead of the batches of an epoch.

    difflab trains in one endless epoch stopped by ``max_steps``, where Lightning's own bar would read
    ``Epoch 0/-2`` with a batch count (micro-batches under gradient accumulation) and no total. The values it shows
    (``train/loss``) are refreshed in the loggers' cadence (``trainer.log_every_n_steps``) and after validation,
    not after every step: reading them is a device sync, which on a GPU would stall the queue of every step.
    """

    @property
    def total_train_batches(self) -> int | float:
        max_steps = self.trainer.max_steps
        return max_steps if max_steps is not None and max_steps > 0 else float("inf")

    def _get_train_description(self, current_epoch: int) -> str:
        return "Step"

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._update(self.train_progress_bar_id, trainer.global_step)

    def _update_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.training and trainer.global_step % max(1, trainer.log_every_n_steps):
            return  # a training step between logging steps: reading the values would be a device sync
        super()._update_metrics(trainer, pl_module)
