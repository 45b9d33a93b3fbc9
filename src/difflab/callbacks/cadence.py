"""When a step-driven callback is due: every N optimizer steps, on the last micro-batch of the step."""

from __future__ import annotations

import pytorch_lightning as pl

__all__ = ["is_due"]


def is_due(trainer: pl.Trainer, batch_idx: int, every_n_steps: int) -> bool:
    """True after optimizer step k * ``every_n_steps`` (k >= 1), once, on its last accumulated micro-batch."""
    step = trainer.global_step
    return step > 0 and step % every_n_steps == 0 and (batch_idx + 1) % trainer.accumulate_grad_batches == 0
