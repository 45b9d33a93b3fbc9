"""What ``difflab-train`` returns to a hyper-parameter sweeper (``hparams_search=...``, ``optimized_metric``).

``optimized_metric: monitor`` is the metric ``checkpoints/best.ckpt`` tracks (``evaluation.monitor_metric``, e.g.
``val/fid_digits-lenet_n1000_dpmpp2m20``); a logged name such as ``val/two_d_n1000_dpmpp2m20`` may be given instead.
The value returned is the **best** one of the run's scoring history (``<run dir>/evaluation.json``, which keeps the
values scored before a resume), not the last. A trial whose loss became non-finite returns ``inf`` (``-inf`` when
higher is better): the sweeper records it as the worst value and the search goes on.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from difflab.callbacks.best_checkpoint import monitor_for
from difflab.errors import ConfigError, TrainingStopped
from difflab.utils.metric_names import higher_is_better

__all__ = ["MONITOR", "Objective", "run_trial", "search_objective"]

log = logging.getLogger(__name__)

MONITOR = "monitor"  # optimized_metric: monitor -> the metric best.ckpt tracks
DIRECTIONS = {"min": "minimize", "max": "maximize"}


@dataclass(frozen=True)
class Objective:
    """The logged metric a sweeper optimises and whether lower (``min``) or higher (``max``) is better."""

    name: str
    mode: str

    @property
    def failure_value(self) -> float:
        """The worst value: what a diverged trial returns."""
        return math.inf if self.mode == "min" else -math.inf

    def best(self, history: list[list[Any]]) -> float | None:
        """The best value of this metric in a scoring history ``[[step, {metric: value}], ...]`` (None: never
        scored)."""
        values = [float(scores[self.name]) for _, scores in history if self.name in scores]
        if not values:
            return None
        return min(values) if self.mode == "min" else max(values)

    def best_of_run(self, output_dir: Path) -> float:
        """The best value of the run in ``output_dir``, read from its ``evaluation.json``."""
        path = output_dir / "evaluation.json"
        try:
            history = json.loads(path.read_text())["history"]
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"optimized_metric={self.name!r}: the run wrote no scoring history ({path}: {err})"
                              ) from err
        value = self.best(history)
        if value is None:
            scored = sorted({name for _, scores in history for name in scores})
            raise ConfigError(f"optimized_metric={self.name!r} was never scored in this run; the scored metrics "
                              f"are {scored} (or use optimized_metric={MONITOR})")
        return value

    def diverged(self, reason: object) -> float:
        """Log one line for a trial that diverged and return the failure value."""
        value = self.failure_value
        log.warning(f"difflab-train: trial diverged ({reason}); {self.name} = {value} returned to the sweeper")
        return value


def search_objective(cfg: DictConfig, sweeper: Mapping[str, Any] | None = None) -> Objective | None:
    """The objective of ``cfg.optimized_metric`` (None when unset), checked before training: a metric that is
    scored, and the sweeper's ``direction`` (when it has one) the metric's."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if not cfg.get("metrics"):
        raise ConfigError(f"optimized_metric={name!r} needs a scored metric, but metrics is empty; "
                          "choose metrics (e.g. metrics=[two_d]) or drop optimized_metric")
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
        objective = Objective(str(name), "max" if higher_is_better(str(name)) else "min")
    direction = (sweeper or {}).get("direction")
    direction = getattr(direction, "name", direction)  # hydra-optuna-sweeper's Direction enum
    wanted = DIRECTIONS[objective.mode]
    if isinstance(direction, str) and direction.lower() != wanted:
        raise ConfigError(f"hydra.sweeper.direction={direction} but {objective.name} is better when "
                          f"{'higher' if objective.mode == 'max' else 'lower'}; set hydra.sweeper.direction={wanted}")
    return objective


def run_trial(cfg: DictConfig, train: Callable[[DictConfig], Any]) -> float | None:
    """Run ``train(cfg)`` and return the best value of ``cfg.optimized_metric`` (None when unset, and on ranks
    other than zero). In a ``--multirun``, a run stopped by a non-finite loss returns the failure value instead of
    raising (which would end the whole search); elsewhere it raises."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    objective = search_objective(cfg, hydra.sweeper if hydra is not None else None)
    try:
        train(cfg)
    except TrainingStopped as err:
        diverged = isinstance(err.__cause__, FloatingPointError)
        if objective is None or not diverged or hydra is None or hydra.mode != RunMode.MULTIRUN:
            raise
        return objective.diverged(err)
    if objective is None or rank_zero_only.rank != 0:
        return None
    return objective.best_of_run(Path(cfg.paths.output_dir))
