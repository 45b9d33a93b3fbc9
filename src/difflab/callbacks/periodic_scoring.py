"""The evaluation of the metrics group (FID, KID, ..., the likelihood bound) every N training steps."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_info

from difflab.callbacks.cadence import is_due
from difflab.scoring import SampleScorer
from difflab.utils.metric_names import higher_is_better

__all__ = ["PeriodicScoring", "best_values", "scoring_history"]


def best_values(history: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """The best value of every metric over a scoring history [(step, {metric: value}), ...]."""
    best: dict[str, float] = {}
    for _, values in history:
        for name, value in values.items():
            pick = max if higher_is_better(name) else min
            best[name] = pick(best[name], value) if name in best else value
    return best


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def scoring_history(trainer: pl.Trainer) -> list[tuple[int, dict[str, float]]]:
    """Every (step, {metric: value}) the trainer's :class:`PeriodicScoring` scored (restored on resume); [] without
    one."""
    return [item for cb in trainer.callbacks if isinstance(cb, PeriodicScoring) for item in cb.history]


class PeriodicScoring(pl.Callback):
    """Every ``evaluation.every_n_steps`` steps (and at the end): sample from the EMA weights, log the metrics.

    Samples are split over ranks by per-sample seeds; every rank updates and computes, so the value is the
    same as in one process with the same seed. Logged as ``val/fid_<extractor>_n<N>_<sampler label>`` etc.
    (:mod:`difflab.metrics.naming`), once per reference split of ``evaluation.reference.split``.
    The wall time spent is kept in ``seconds`` and written with every value to ``<run dir>/evaluation.json`` at the end.
    """

    def __init__(
        self,
        metrics: Mapping[str, Any] | None,
        features: Mapping[str, Any] | None,
        evaluation: Mapping[str, Any],
        dataset: Mapping[str, Any],
        output_dir: str | None = None,
    ) -> None:
        evaluation, metrics = _plain(evaluation), _plain(metrics) or {}
        self.every_n_steps = int(evaluation["every_n_steps"])
        if self.every_n_steps < 1:
            raise ValueError(f"evaluation.every_n_steps={self.every_n_steps!r} must be >= 1")
        sampler_cfg = evaluation["sampler"]
        self.evaluator = SampleScorer(
            metrics=metrics, features=_plain(features), sampler=sampler_cfg,
            reference=evaluation["reference"], dataset=_plain(dataset),
            seed=int(evaluation["seed"]), batch_size=evaluation["batch_size"], use_ema=bool(evaluation["use_ema"]),
            class_label=evaluation["class_label"], guidance_scale=float(evaluation["guidance_scale"]),
        )
        self.output_dir = output_dir
        self.seconds = 0.0
        self.last_step = -1
        self.history: list[tuple[int, dict[str, float]]] = []

    def state_dict(self) -> dict[str, Any]:
        """The scoring history so far, kept in checkpoints: a resumed run's ``evaluation.json`` holds all of it."""
        return {"history": [[step, dict(values)] for step, values in self.history], "seconds": self.seconds,
                "last_step": self.last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(step), dict(values)) for step, values in state_dict.get("history", [])]
        self.seconds = float(state_dict.get("seconds", 0.0))
        self.last_step = int(state_dict.get("last_step", -1))

    def check_data(self, datamodule: Any) -> None:
        """Called by ``difflab-train`` before training: the data holds what the metrics need."""
        self.evaluator.check_data(datamodule)

    def _evaluate(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not self.evaluator.metrics:
            return
        if hasattr(pl_module, "check_finite_loss"):  # every rank: never score weights a non-finite loss has stepped
            pl_module.check_finite_loss()
        start = time.perf_counter()
        results = self.evaluator.score(pl_module, trainer.datamodule, trainer.global_rank, trainer.world_size)
        self.seconds += time.perf_counter() - start
        self.last_step = trainer.global_step
        self.history.append((trainer.global_step, results))
        # Straight to the loggers (self.log would hold values back until a multiple of log_every_n_steps), and
        # into callback_metrics on every rank (the values are identical), where ModelCheckpoint (best.ckpt) reads them.
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(results, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in results.items()})
        rank_zero_info(f"step {trainer.global_step}: " + ", ".join(f"{k} = {v:.4f}" for k, v in results.items())
                       + f" ({time.perf_counter() - start:.1f} s)")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if is_due(trainer, batch_idx, self.every_n_steps):
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.global_step != self.last_step and trainer.global_step > 0:
            self._evaluate(trainer, pl_module)
        if self.output_dir and trainer.is_global_zero and self.evaluator.metrics:
            record = {"evaluation_seconds": round(self.seconds, 3), "timings": self.evaluator.timings,
                      "history": self.history}
            with open(f"{self.output_dir}/evaluation.json", "w") as handle:
                json.dump(record, handle, indent=2)
