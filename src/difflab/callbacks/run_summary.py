"""The final numbers of a run in its W&B summary: the last and the best value of every ``val/*`` metric."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from difflab.callbacks.periodic_scoring import best_values, scoring_history

__all__ = ["RunSummary", "best_and_last"]


def best_and_last(history: Iterable[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """From ``[(step, {metric: value}), ...]``: ``{metric: last value, "best/<metric>": best value}`` (best as
    :func:`~difflab.callbacks.periodic_scoring.best_values` picks it: the lowest, the highest Inception score)."""
    ordered = sorted(history, key=lambda item: item[0])  # stable: rows of one step keep their order
    summary = {name: float(value) for _, row in ordered for name, value in row.items()}
    summary.update({f"best/{name}": value for name, value in best_values(ordered).items()})
    return summary


class RunSummary(pl.Callback):
    """At the end of training, puts the last and the best value of each ``val/*`` metric into the summary of every
    W&B run of the trainer (``val/fid_...`` and ``best/val/fid_...``): the scored metrics from
    :class:`PeriodicScoring`'s history, and the validation values the module logs (``val/loss``). Without a W&B
    logger it does nothing."""

    def __init__(self) -> None:
        self.validation: list[tuple[int, dict[str, float]]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        scored = {name for _, row in scoring_history(trainer) for name in row}
        values = {k: float(v) for k, v in trainer.callback_metrics.items()
                  if k.startswith("val/") and k not in scored and v.numel() == 1}
        if values:
            self.validation.append((trainer.global_step, values))

    def teardown(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        # after every callback's on_train_end, the final evaluation among them
        if stage != "fit" or not trainer.is_global_zero:
            return
        runs = [logger.experiment for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not runs:
            return
        summary = best_and_last([*self.validation, *scoring_history(trainer)])
        for run in runs:
            run.summary.update(summary)
