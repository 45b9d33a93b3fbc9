"""What ``difflab-train`` returns to a hyper-parameter sweeper (``hparams_search=...``, ``optimized_metric``).

``optimized_metric`` is checked before training (before the first trial, and by each trial): ``monitor`` is the
metric ``checkpoints/best.ckpt`` tracks (``evaluation.monitor_metric``, e.g.
``val/fid_digits-lenet_n1000_dpmpp2m20``); any other name must be one the run scores (:func:`scored_names`, e.g.
``val/two_d_n1000_dpmpp2m20``, ``val/recall_digits-lenet_n1000_dpmpp2m20``) or ``val/loss``, which the CSV logger
records. The value returned is the **best** one of the run: over its scoring history (``<run dir>/evaluation.json``,
which keeps the values scored before a resume) or, for ``val/loss``, over its ``csv/metrics*.csv`` (the files of
earlier attempts included). A trial whose loss became non-finite returns ``inf`` (``-inf`` when higher is better):
the sweeper records it as the worst value and the search goes on.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from difflab.callbacks.best_checkpoint import monitor_for
from difflab.callbacks.periodic_scoring import best_values
from difflab.errors import ConfigError, TrainingStopped
from difflab.metrics.naming import (
    DEFAULT_REFERENCE_SPLIT,
    REFERENCE_METRICS,
    extractor_label,
    metric_name,
    reference_splits,
)
from difflab.sweeps.overrides import in_sweep
from difflab.utils.metric_names import higher_is_better

__all__ = ["CSV_LOGGED", "MONITOR", "Objective", "run_trial", "scored_names", "search_objective"]

log = logging.getLogger(__name__)

MONITOR = "monitor"  # optimized_metric: monitor -> the metric best.ckpt tracks
CSV_LOGGED = ("val/loss",)  # logged names accepted besides the scored ones; their best is read from the CSV logs
DIRECTIONS = {"min": "minimize", "max": "maximize"}


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def scored_names(metrics: Mapping[str, Any] | None, features: Mapping[str, Any] | None,
                 evaluation: Mapping[str, Any]) -> list[str]:
    """The names every scoring of a training run logs its main values under (the evaluation sampler's, against each
    reference split), e.g. ``["val/fid_digits-lenet_n1000_dpmpp2m20", "val/precision_...", "val/recall_..."]``. The
    likelihood bound's name holds the number of points scored, known only from the data:
    ``val/nll_bpd_n<N>_stride<stride>``."""
    metrics, features, evaluation = _plain(metrics) or {}, _plain(features), _plain(evaluation)
    extractor = extractor_label(features["name"]) if features else None
    splits = reference_splits((evaluation.get("reference") or {}).get("split", DEFAULT_REFERENCE_SPLIT))
    names = []
    for metric, options in metrics.items():
        if metric == "nll":
            names.append(f"val/nll_bpd_n<N>_stride{int((options or {}).get('stride', 10))}")
            continue
        for split in splits if metric in REFERENCE_METRICS else [DEFAULT_REFERENCE_SPLIT]:
            name = metric_name(metric, None if metric == "two_d" else extractor, options["num_samples"],
                               evaluation["sampler"], reference_split=split)
            if metric == "precision_recall":
                names += [name.replace("precision_recall", "precision"), name.replace("precision_recall", "recall")]
            else:
                names.append(name)
    return names


def _is_scored(name: str, scored: list[str]) -> bool:
    """``name`` is one of ``scored`` (``<N>`` standing for any number of points)."""
    return any(re.fullmatch(re.escape(s).replace(re.escape("<N>"), r"\d+"), name) for s in scored)


def _csv_logged(cfg: DictConfig) -> bool:
    """The run has a CSV logger (``logger=csv``, the default, or ``logger=many``)."""
    loggers = cfg.get("logger") or {}
    return any("CSVLogger" in str((node or {}).get("_target_", "")) for node in loggers.values())


@dataclass(frozen=True)
class Objective:
    """The logged metric a sweeper optimises, whether lower (``min``) or higher (``max``) is better, and where its
    values are read at the end of a trial: the scoring history (``scores``) or the CSV logs (``csv``)."""

    name: str
    mode: str
    source: str = "scores"

    @property
    def failure_value(self) -> float:
        """The worst value: what a diverged trial returns."""
        return math.inf if self.mode == "min" else -math.inf

    def best_of_run(self, output_dir: Path) -> float:
        """The best value of the run in ``output_dir``: over its ``evaluation.json`` history, or its
        ``csv/metrics*.csv`` for a name of :data:`CSV_LOGGED`."""
        if self.source == "csv":
            from difflab.reporting.series import best_value, read_csv_logs

            value = best_value(self.name, read_csv_logs(output_dir).get(self.name, {}))
            if value is None:
                raise ConfigError(f"optimized_metric={self.name!r} was never logged in this run "
                                  f"({output_dir / 'csv'}/metrics*.csv); did validation run?")
            return value
        path = output_dir / "evaluation.json"
        try:
            history = json.loads(path.read_text())["history"]
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"optimized_metric={self.name!r}: the run wrote no scoring history ({path}: {err})"
                              ) from err
        best = best_values(history)
        if self.name not in best:
            raise ConfigError(f"optimized_metric={self.name!r} was never scored in this run; the scored metrics "
                              f"are {sorted(best)} (or use optimized_metric={MONITOR})")
        return best[self.name]

    def diverged(self, reason: object) -> float:
        """Log one line for a trial that diverged and return the failure value."""
        value = self.failure_value
        log.warning(f"difflab-train: trial diverged ({reason}); {self.name} = {value} returned to the sweeper")
        return value


def _named_objective(cfg: DictConfig, name: str) -> Objective:
    """The objective of an explicit metric name, refused in one line unless the run logs it."""
    if name in CSV_LOGGED:
        if not _csv_logged(cfg):
            raise ConfigError(f"optimized_metric={name!r} is read from the CSV logs, but the run has no CSV logger; "
                              "add one (logger=csv or logger=many) or optimize a scored metric")
        return Objective(name, "max" if higher_is_better(name) else "min", source="csv")
    try:
        scored = scored_names(cfg.get("metrics"), cfg.get("features"), cfg.evaluation)
    except (KeyError, TypeError) as err:
        raise ConfigError(f"optimized_metric={name!r}: the names the run scores cannot be told from metrics "
                          f"({err!r})") from err
    if not _is_scored(name, scored):
        raise ConfigError(f"optimized_metric={name!r} is not logged by this run; choose {MONITOR}, one of the "
                          f"scored metrics {scored} or one of {list(CSV_LOGGED)}")
    return Objective(name, "max" if higher_is_better(name) else "min")


def search_objective(cfg: DictConfig, sweeper: Mapping[str, Any] | None = None) -> Objective | None:
    """The objective of ``cfg.optimized_metric`` (None when unset), checked before any work: a metric the run
    logs (see the module docstring), and the sweeper's ``direction`` (when it has one) the metric's."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    name = str(name)
    if not cfg.get("metrics") and name not in CSV_LOGGED:
        raise ConfigError(f"optimized_metric={name!r} needs a scored metric, but metrics is empty; "
                          f"choose metrics (e.g. metrics=[two_d]), optimize one of {list(CSV_LOGGED)} "
                          "or drop optimized_metric")
    if name == MONITOR:
        try:
            monitor = monitor_for(cfg.metrics, cfg.get("features"), cfg.evaluation)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        if monitor is None:
            raise ConfigError(f"optimized_metric={MONITOR} but evaluation.monitor_metric=null monitors nothing; "
                              "set evaluation.monitor_metric (auto, fid, kid, two_d, inception_score)")
        objective = Objective(monitor.name, monitor.mode)
    else:
        objective = _named_objective(cfg, name)
    direction = (sweeper or {}).get("direction")
    direction = getattr(direction, "name", direction)  # hydra-optuna-sweeper's Direction enum
    wanted = DIRECTIONS[objective.mode]
    if isinstance(direction, str) and direction.lower() != wanted:
        raise ConfigError(f"hydra.sweeper.direction={direction} but {objective.name} is better when "
                          f"{'higher' if objective.mode == 'max' else 'lower'}; set hydra.sweeper.direction={wanted}")
    return objective


def run_trial(cfg: DictConfig, train: Callable[[DictConfig], Any]) -> float | None:
    """Run ``train(cfg)`` and return the best value of ``cfg.optimized_metric`` (None when unset, and on ranks
    other than zero); the metric is checked first, before any work. In a ``--multirun``, a run stopped by a
    non-finite loss returns the failure value instead of raising (which would end the whole search); elsewhere it
    raises."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    objective = search_objective(cfg, hydra.sweeper if hydra is not None else None)
    try:
        train(cfg)
    except TrainingStopped as err:
        diverged = isinstance(err.__cause__, FloatingPointError)
        if objective is None or not diverged or not in_sweep():
            raise
        return objective.diverged(err)
    if objective is None or rank_zero_only.rank != 0:
        return None
    return objective.best_of_run(Path(cfg.paths.output_dir))
