"""Evaluation (FID and the other sample metrics) and BitsPerDim (the likelihood bound) every N steps."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info

from difflab.callbacks.cadence import is_due
from difflab.evaluation import Evaluator, score_nll

__all__ = ["BitsPerDim", "Evaluation", "best_checkpoint"]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


class Evaluation(pl.Callback):
    """Every ``evaluation.every_n_steps`` steps (and at the end): sample from the EMA weights, log the metrics.

    Samples are split over ranks by per-sample seeds; every rank updates and computes, so the value is the
    same as in one process with the same seed. Logged as ``val/fid_<extractor>_n<N>_<sampler><steps>`` etc.
    The wall time spent is kept in ``seconds`` and written with every value to ``<run dir>/evaluation.json`` at the end.
    """

    def __init__(self, metrics: Mapping[str, Any] | None, features: Mapping[str, Any] | None, evaluation: Mapping[str, Any], dataset: Mapping[str, Any], output_dir: str | None = None) -> None:
        evaluation, metrics = _plain(evaluation), _plain(metrics) or {}
        self.every_n_steps = int(evaluation["every_n_steps"])
        if self.every_n_steps < 1:
            raise ValueError(f"evaluation.every_n_steps={self.every_n_steps!r} must be >= 1")
        sampler_cfg = evaluation["sampler"]
        self.evaluator = Evaluator(
            metrics=metrics, features=_plain(features), sampler=instantiate(sampler_cfg), sampler_name=sampler_cfg["name"],
            sampler_steps=sampler_cfg["steps"], reference=evaluation["reference"], dataset=_plain(dataset),
            seed=int(evaluation["seed"]), batch_size=evaluation["batch_size"], use_ema=bool(evaluation["use_ema"]),
            class_label=evaluation["class_label"], guidance_scale=float(evaluation["guidance_scale"]),
        )
        self.output_dir = output_dir
        self.seconds = 0.0
        self.last_step = -1
        self.history: list[tuple[int, dict[str, float]]] = []

    def check_data(self, datamodule: Any) -> None:
        """Called by ``difflab-train`` before training: the data holds what the metrics need."""
        self.evaluator.check_data(datamodule)

    def _evaluate(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not self.evaluator.metrics:
            return
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
        rank_zero_info(f"step {trainer.global_step}: " + ", ".join(f"{k} = {v:.4f}" for k, v in results.items()) + f" ({time.perf_counter() - start:.1f} s)")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if is_due(trainer, batch_idx, self.every_n_steps):
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.global_step != self.last_step and trainer.global_step > 0:
            self._evaluate(trainer, pl_module)
        if self.output_dir and trainer.is_global_zero and self.evaluator.metrics:
            record = {"evaluation_seconds": round(self.seconds, 3), "timings": self.evaluator.timings, "history": self.history}
            with open(f"{self.output_dir}/evaluation.json", "w") as handle:
                json.dump(record, handle, indent=2)


def best_checkpoint(dirpath: str, monitor: str | None, mode: str, every_n_train_steps: int) -> ModelCheckpoint | None:
    """``<dirpath>/best.ckpt``: the checkpoint with the best ``monitor`` value so far; None when nothing is monitored."""
    if monitor is None:
        return None
    return ModelCheckpoint(dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                           every_n_train_steps=every_n_train_steps, auto_insert_metric_name=False, save_last=False)


class BitsPerDim(pl.Callback):
    """Logs ``val/nll_bpd_n<N>_stride<k>`` (and the prior and decoder terms) from the EMA weights.

    The bound (Ho et al. 2020, eq. 5) is summed over all T steps with ``stride=1``; with ``stride=k`` one
    random timestep per block of k is evaluated and weighted by k (unbiased, noisier). The randomness is
    seeded, so successive evaluations differ only through the weights.
    """

    def __init__(self, every_n_steps: int = 600, max_batches: int | None = 1, stride: int = 10, seed: int = 0, use_ema: bool = True) -> None:
        if every_n_steps < 1 or stride < 1:
            raise ValueError(f"callbacks.nll: every_n_steps={every_n_steps!r} and stride={stride!r} must be >= 1")
        self.every_n_steps, self.max_batches, self.stride, self.seed, self.use_ema = every_n_steps, max_batches, stride, seed, use_ema
        self.history: list[tuple[int, float]] = []

    def evaluate(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, Any]:
        """The bound over (at most ``max_batches`` batches of) the validation loader."""
        return score_nll(pl_module, trainer.datamodule.val_dataloader(), self.stride, self.max_batches, self.seed, self.use_ema)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not is_due(trainer, batch_idx, self.every_n_steps):
            return
        step = trainer.global_step
        result = self.evaluate(trainer, pl_module)
        name = f"val/nll_bpd_n{result['num_samples']}_stride{self.stride}"
        self.history.append((step, float(result["total_bpd"])))
        metrics = {name: result["total_bpd"], f"{name}_prior": result["prior_bpd"], f"{name}_decoder": result["decoder_bpd"]}
        pl_module.log_dict({k: float(v) for k, v in metrics.items()}, on_step=True, on_epoch=False, rank_zero_only=True)
        rank_zero_info(f"step {step}: {name} = {float(result['total_bpd']):.4f}")
