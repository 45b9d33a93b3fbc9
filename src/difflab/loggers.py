"""Loggers: a CSV logger whose rows survive a kill, and W&B factories whose behaviour depends on the machine."""

from __future__ import annotations

import csv
import io
import netrc
import os
import socket
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fsspec.implementations.local import LocalFileSystem
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from difflab.utils.files import atomic_write

__all__ = ["DurableCSVLogger", "wandb_configured", "wandb_unreachable", "make_wandb_logger", "FallbackWandbLogger"]


class _DurableCSVWriter(ExperimentWriter):
    """Lightning's CSV writer with every :meth:`save` on disk when it returns (fsync'd), and the file rewritten
    atomically when a new column appears (Lightning truncates and rewrites it in place: a kill then loses every row).
    Remote filesystems keep Lightning's behaviour."""

    def save(self) -> None:
        if not self.metrics:
            return
        if not isinstance(self._fs, LocalFileSystem):
            super().save()
            return
        path = Path(self.metrics_file_path)
        new_keys = set().union(*self.metrics) - set(self.metrics_keys)
        if new_keys or not path.is_file():
            keys = sorted({*self.metrics_keys, *new_keys})
            previous: list[dict[str, str]] = []
            if path.is_file():
                with open(path, newline="") as handle:
                    previous = list(csv.DictReader(handle))
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=keys)
            writer.writeheader()
            writer.writerows([*previous, *self.metrics])
            atomic_write(path, lambda handle: handle.write(text.getvalue().encode()))
            self.metrics_keys = keys  # only once the file has them
        else:
            with open(path, "a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self.metrics_keys).writerows(self.metrics)
                handle.flush()
                os.fsync(handle.fileno())
        self.metrics = []


class DurableCSVLogger(CSVLogger):
    """Lightning's :class:`CSVLogger` whose ``save()`` leaves every row handed to it on disk (see
    :class:`_DurableCSVWriter`); Lightning calls ``save()`` after each ``log_metrics``."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _DurableCSVWriter(log_dir=self.log_dir)
        return self._experiment


def wandb_configured() -> bool:
    """True when the user has set W&B up for online logging (an API key in the environment or ~/.netrc,
    or ``WANDB_MODE=online``); False means runs are logged offline and can be synced later."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return False
    if mode == "online" or os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        hosts = netrc.netrc(netrc_path).hosts if netrc_path.is_file() else {}
    except (netrc.NetrcParseError, OSError):
        return False
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    return base in hosts


def wandb_unreachable(timeout: float = 3.0) -> str | None:
    """Why the W&B server (``WANDB_BASE_URL``) cannot be reached in ``timeout`` seconds; None when it can."""
    url = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host, port = url.hostname or "api.wandb.ai", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        return f"{host}:{port} cannot be reached ({err.strerror or err})"
    return None


class FallbackWandbLogger(WandbLogger):
    """A :class:`WandbLogger` that, when W&B refuses or fails to start a run (not authorised, server down),
    warns once and logs offline instead of stopping the training."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        start = WandbLogger.experiment.fget  # type: ignore[attr-defined]
        try:
            return start(self)
        except Exception as err:  # noqa: BLE001 - whatever W&B raises, training must go on
            if self._offline:
                raise
            warnings.warn(f"W&B could not start an online run ({type(err).__name__}: {err}); logging offline instead "
                          f"(sync later with `wandb sync {self._save_dir}/wandb`)", stacklevel=2)
            self._offline, self._experiment = True, None
            self._wandb_init["mode"] = "offline"
            return start(self)


def make_wandb_logger(offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """A W&B logger; ``offline=None`` (the default) means offline unless :func:`wandb_configured`.

    An online logger whose server cannot be reached falls back to offline with one warning, before training.
    """
    if offline is None:
        offline = not wandb_configured()
    if not offline:
        reason = wandb_unreachable()
        if reason is not None:
            warnings.warn(f"W&B: {reason}; logging offline instead (sync later with `wandb sync`)", stacklevel=2)
            offline = True
    return FallbackWandbLogger(offline=offline, **kwargs)
