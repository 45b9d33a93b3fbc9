"""What the entry points share: where the configs live, and how a bad input is reported."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from difflab.metrics.naming import extractor_label, metric_name

__all__ = ["CONFIG_DIR", "ConfigError", "TrainingStopped", "WritableOutputCheck", "user_errors", "reported_as_config_error", "monitor_name"]

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


MONITOR_PREFERENCE = ("fid", "kid", "two_d", "inception_score")  # what evaluation.monitor_metric=auto picks, in order


def monitored_metric(root: DictConfig) -> str | None:
    """The metric ``checkpoints/best.ckpt`` tracks: ``evaluation.monitor_metric``, with ``auto`` resolved."""
    metric = root.evaluation.get("monitor_metric")
    options = root.get("metrics") or {}
    if metric == "auto":
        return next((m for m in MONITOR_PREFERENCE if m in options), None)
    if metric is not None and metric not in MONITOR_PREFERENCE:
        raise ValueError(f"evaluation.monitor_metric={metric!r} cannot pick checkpoints; choose one of {['auto', *MONITOR_PREFERENCE]} or null")
    if metric is not None and metric not in options:
        raise ValueError(f"evaluation.monitor_metric={metric!r} is not among metrics={sorted(options)}; choose one of them, auto or null")
    return metric


def monitor_name(_root_: DictConfig) -> str | None:
    """``${difflab_monitor:}``: the logged name of the monitored metric (None: no best checkpoint)."""
    metric = monitored_metric(_root_)
    if metric is None:
        return None
    sampler = _root_.evaluation.sampler
    extractor = None if metric == "two_d" else extractor_label(_root_.features.name)
    return metric_name(metric, extractor, _root_.metrics[metric].num_samples, sampler.name, sampler.steps)


def monitor_mode(_root_: DictConfig) -> str:
    """``${difflab_monitor_mode:}``: ``max`` for the inception score, ``min`` for the distances."""
    return "max" if monitored_metric(_root_) == "inception_score" else "min"


if not OmegaConf.has_resolver("difflab_monitor"):
    OmegaConf.register_new_resolver("difflab_monitor", monitor_name)
    OmegaConf.register_new_resolver("difflab_monitor_mode", monitor_mode)
if not OmegaConf.has_resolver("difflab_cwd"):  # usable before Hydra sets ${hydra:runtime.cwd} (sweep dirs)
    OmegaConf.register_new_resolver("difflab_cwd", os.getcwd)


class ConfigError(ValueError):
    """A bad value given by the user: reported as one line, without a traceback (exit status 2)."""


class TrainingStopped(RuntimeError):
    """A run that stopped on a fault it detected (a non-finite loss): one line, exit status 1."""


def _root_message(err: BaseException) -> str:
    """The innermost cause of ``err`` (Hydra wraps instantiation errors), with the config key it came from."""
    key = None
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        key = getattr(err, "full_key", None) or key
        err = err.__cause__
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    msg = re.sub(r"^\w+ raised while resolving interpolation: ", "", msg)  # a resolver's own message is the news
    return f"{msg} (config key: {key})" if key and key not in msg else msg


@contextmanager
def reported_as_config_error() -> Iterator[None]:
    """Turn the ValueErrors/TypeErrors of building objects from the config into :class:`ConfigError`."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, InstantiationException, OmegaConfBaseException, FileNotFoundError) as err:
        raise ConfigError(_root_message(err)) from err


@contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Print a :class:`ConfigError` as ``program: error: ...`` and exit with status 2 (traceback with HYDRA_FULL_ERROR=1)."""
    try:
        yield
    except (ConfigError, TrainingStopped) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{program}: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(err, ConfigError) else 1)


def unwritable_reason(directory: Path) -> str | None:
    """Why ``directory`` cannot be created and written (None when it can): checked on its nearest existing ancestor."""
    probe = directory
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


class WritableOutputCheck(Callback):
    """Hydra callback: before Hydra creates the run (or sweep) directory, make sure it can; otherwise print one
    line naming the directory and exit with status 2 instead of Hydra's traceback."""

    def _check(self, directory: str, key: str) -> None:
        reason = unwritable_reason(Path(directory))
        if reason is not None:
            print(f"difflab-{self.task}: error: {key}={directory!r} cannot be created: {reason}; choose a writable directory", file=sys.stderr, flush=True)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        self.task = config.get("task_name", "train")
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        self.task = config.get("task_name", "train")
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")
