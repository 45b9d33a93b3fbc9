"""``checkpoints/best.ckpt``: which metric it tracks, decided from the config before the run, and the checkpoint
callback."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from difflab.metrics.naming import DEFAULT_REFERENCE_SPLIT, extractor_label, metric_name, reference_splits
from difflab.utils.metric_names import higher_is_better

__all__ = ["MONITOR_PREFERENCE", "Monitor", "best_checkpoint", "monitored_metric", "monitor_for"]

MONITOR_PREFERENCE = ("fid", "kid", "two_d", "inception_score")  # what evaluation.monitor_metric=auto picks, in order


@dataclass(frozen=True)
class Monitor:
    """The logged name of the tracked metric and whether lower (``min``) or higher (``max``) is better."""

    name: str
    mode: str


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def monitored_metric(monitor_metric: str | None, metrics: Mapping[str, Any] | None) -> str | None:
    """The metric ``best.ckpt`` tracks: ``evaluation.monitor_metric`` with ``auto`` resolved (None: no best
    checkpoint)."""
    options = list(metrics or {})
    if monitor_metric == "auto":
        return next((m for m in MONITOR_PREFERENCE if m in options), None)
    if monitor_metric is not None and monitor_metric not in MONITOR_PREFERENCE:
        raise ValueError(f"evaluation.monitor_metric={monitor_metric!r} cannot pick checkpoints; "
                         f"choose one of {['auto', *MONITOR_PREFERENCE]} or null")
    if monitor_metric is not None and monitor_metric not in options:
        raise ValueError(f"evaluation.monitor_metric={monitor_metric!r} is not among metrics={sorted(options)}; "
                         "choose one of them, auto or null")
    return monitor_metric


def monitor_for(
    metrics: Mapping[str, Any] | None, features: Mapping[str, Any] | None, evaluation: Mapping[str, Any]
) -> Monitor | None:
    """The monitor of ``best.ckpt`` for these ``metrics``, ``features`` and ``evaluation`` config nodes, e.g.
    ``Monitor("val/fid_digits-lenet_n1000_dpmpp2m20", "min")``; None when nothing is scored or monitored. With
    several reference splits (``evaluation.reference.split=[val,train]``) it is the value against the first."""
    metrics, features, evaluation = _plain(metrics) or {}, _plain(features), _plain(evaluation)
    metric = monitored_metric(evaluation.get("monitor_metric"), metrics)
    if metric is None:
        return None
    extractor = None if metric == "two_d" or not features else extractor_label(features["name"])
    split = reference_splits((evaluation.get("reference") or {}).get("split", DEFAULT_REFERENCE_SPLIT))[0]
    name = metric_name(metric, extractor, metrics[metric]["num_samples"], evaluation["sampler"], reference_split=split)
    return Monitor(name, "max" if higher_is_better(metric) else "min")


def best_checkpoint(dirpath: str, metrics: Mapping[str, Any] | None, features: Mapping[str, Any] | None,
                    evaluation: Mapping[str, Any]) -> ModelCheckpoint | None:
    """``<dirpath>/best.ckpt``: the checkpoint with the best monitored value so far, checked every
    ``evaluation.every_n_steps``; None when nothing is monitored."""
    monitor = monitor_for(metrics, features, evaluation)
    if monitor is None:
        return None
    return ModelCheckpoint(dirpath=dirpath, filename="best", monitor=monitor.name, mode=monitor.mode, save_top_k=1,
                           every_n_train_steps=int(_plain(evaluation)["every_n_steps"]), auto_insert_metric_name=False,
                           save_last=False)
