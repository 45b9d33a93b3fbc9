"""Loggers: a CSV logger whose rows survive a kill, W&B factories whose behaviour depends on the machine and that
name each run after its job, and the closing of a job's loggers."""

from __future__ import annotations

import csv
import io
import netrc
import os
import socket
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fsspec.implementations.local import LocalFileSystem
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

from difflab.sweeps.identity import run_identity, tag
from difflab.utils.files import atomic_write

__all__ = ["DurableCSVLogger", "wandb_configured", "wandb_unreachable", "make_wandb_logger", "FallbackWandbLogger",
           "close_loggers"]

_STARTED_RUNS: set[str] = set()  # ids of the W&B runs difflab's loggers started in this process


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
    """A :class:`WandbLogger` that starts a run of its own and, when W&B refuses or fails to start one online
    (not authorised, server down), warns once and logs offline instead of stopping the training.

    A run that an earlier job of this process started and left open (its job ended without
    :func:`close_loggers`; a sweep runs its jobs in one process) is finished first: Lightning would log into it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # W&B warns that the setting is gone whenever it is passed
            self._wandb_init.pop("anonymous", None)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        import wandb

        start = WandbLogger.experiment.fget  # type: ignore[attr-defined]
        if self._experiment is None:
            _finish_stale_run()
        existing = wandb.run  # a run the user started: Lightning logs into it, and it stays the user's
        try:
            run = start(self)
        except Exception as err:  # noqa: BLE001 - whatever W&B raises, training must go on
            if self._offline:
                raise
            warnings.warn(f"W&B could not start an online run ({type(err).__name__}: {err}); logging offline instead "
                          f"(sync later with `wandb sync {self._save_dir}/wandb`)", stacklevel=2)
            self._offline, self._experiment = True, None
            self._wandb_init["mode"] = "offline"
            run = start(self)
        if run is not existing and getattr(run, "id", None):
            _STARTED_RUNS.add(run.id)
        return run


def _finish_stale_run() -> None:
    import wandb

    if wandb.run is not None and wandb.run.id in _STARTED_RUNS:
        warnings.warn(f"W&B: the run {wandb.run.name!r} of an earlier job was still open; finishing it", stacklevel=3)
        wandb.run.finish()


def make_wandb_logger(
    offline: bool | None = None,
    name: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    tags: Sequence[str] | None = None,
    task_name: str | None = None,
    log_dir: str | None = None,
    **kwargs: Any,
) -> WandbLogger:
    """A W&B logger; ``offline=None`` (the default) means offline unless :func:`wandb_configured`.

    ``name``, ``group``, ``job_type`` and ``tags`` left None are those of the Hydra job
    (:func:`difflab.sweeps.run_identity` with ``task_name`` and ``log_dir``): a sweep's jobs share a group and are
    named by their swept overrides. Given values win (``group=""``: no group). Tags are cut to W&B's 64 characters.
    An online logger whose server cannot be reached falls back to offline with one warning, before training.
    """
    identity = run_identity(task_name, log_dir)
    kwargs.update(
        name=identity.name if name is None else name,
        group=identity.group if group is None else (group or None),
        job_type=identity.job_type if job_type is None else job_type,
        tags=list(identity.tags) if tags is None else [tag(str(t)) for t in tags],
    )
    if offline is None:
        offline = not wandb_configured()
    if not offline:
        reason = wandb_unreachable()
        if reason is not None:
            warnings.warn(f"W&B: {reason}; logging offline instead (sync later with `wandb sync`)", stacklevel=2)
            offline = True
    return FallbackWandbLogger(offline=offline, **kwargs)


def close_loggers(loggers: Iterable[Logger], failed: bool | None = None) -> None:
    """Finish the W&B run of every W&B logger in ``loggers`` (on rank zero), so that the next job of the same
    process (a sweep) starts a run of its own. A failed job's run ends with exit code 1; ``failed=None``: failed
    when called while an exception propagates (in a ``finally:``). Safe without W&B loggers and when called twice."""
    if rank_zero_only.rank != 0:
        return
    if failed is None:
        failed = sys.exc_info()[0] is not None
    for logger in loggers:
        run = getattr(logger, "_experiment", None) if isinstance(logger, WandbLogger) else None
        if run is None:
            continue
        try:
            run.finish(exit_code=1 if failed else 0)
        except Exception as err:  # noqa: BLE001 - closing must not hide the job's own outcome
            warnings.warn(f"W&B: the run could not be finished ({type(err).__name__}: {err})", stacklevel=2)
        finally:
            _STARTED_RUNS.discard(getattr(run, "id", None))
