"""FlushLoggers: everything logged before a checkpoint is on disk before the checkpoint takes its name.

Lightning hands the values a training step ``self.log``-ged to the loggers only after the callbacks'
``on_train_batch_end``, where :class:`~pytorch_lightning.callbacks.ModelCheckpoint` writes the checkpoints
of that step. A run killed between the two resumes after the step, and its loss is never logged. This
callback's ``on_save_checkpoint``, which Lightning calls before every checkpoint is written (periodic,
``last.ckpt``, ``best.ckpt``), hands the pending values over first and then calls every logger's ``save()``
(CSV rows written and fsync'd with :class:`difflab.loggers.DurableCSVLogger`, TensorBoard events flushed).
Lightning's own hand-over of that step afterwards logs only what was logged after the checkpoint, so no
row is written twice.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn

__all__ = ["FlushLoggers"]


class FlushLoggers(pl.Callback):
    """Before every checkpoint write: the current training step's logged values handed to the loggers, and
    every logger flushed. Built into difflab's trainer (:func:`difflab.checkpoints.make_trainer`)."""

    def __init__(self) -> None:
        self._batch: int | None = None       # the training batch whose values were handed over early
        self._sent: dict[str, Any] = {}      # ... and those values

    # Lightning internals used here (pytorch-lightning 2.x): ``trainer._logger_connector`` with
    # ``update_train_step_metrics()``, ``metrics["log"]``, ``log_metrics()``, ``should_update_logs``; the
    # training loop's ``batch_progress`` and ``_should_accumulate()``. tests/integration/test_faults.py
    # checks, at every checkpoint of a real run, that the rows are on disk.
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._batch, self._sent = None, {}
        connector = trainer._logger_connector
        if getattr(connector, "_difflab_flush_loggers", None) is self:
            return
        lightning_update = connector.update_train_step_metrics

        def update_train_step_metrics() -> None:
            if self._batch is not None and self._batch == self._current_batch(trainer):
                self._hand_over(trainer)  # only what was logged after the early hand-over
            else:
                lightning_update()

        connector.update_train_step_metrics = update_train_step_metrics
        connector._difflab_flush_loggers = self

    @staticmethod
    def _current_batch(trainer: pl.Trainer) -> int:
        return trainer.fit_loop.epoch_loop.batch_progress.total.processed

    @staticmethod
    def _step_pending(trainer: pl.Trainer) -> bool:
        """True between a training batch's end and Lightning's hand-over of its logged values."""
        if trainer.state.fn != TrainerFn.FITTING or not trainer.training:
            return False
        progress = trainer.fit_loop.epoch_loop.batch_progress.total
        return progress.processed > progress.completed

    def _hand_over(self, trainer: pl.Trainer) -> None:
        """Log this training step's values that were not handed to the loggers yet (Lightning's rules:
        not while gradients accumulate, only at a logging step)."""
        connector = trainer._logger_connector
        if trainer.fit_loop._should_accumulate() and trainer.lightning_module.automatic_optimization:
            return
        if not (connector.should_update_logs or trainer.fast_dev_run):
            return
        batch = self._current_batch(trainer)
        if batch != self._batch:
            self._batch, self._sent = batch, {}
        values = connector.metrics["log"]
        new = {k: v for k, v in values.items() if k not in self._sent or not _same(self._sent[k], v)}
        if new:
            connector.log_metrics(new)
            self._sent.update(new)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._step_pending(trainer):
            self._hand_over(trainer)
        for logger in trainer.loggers:
            logger.save()


def _same(a: Any, b: Any) -> bool:
    return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
