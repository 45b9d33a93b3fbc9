"""Test-only checkpoint IO plugins, given to a run with a Hydra override of ``trainer.plugins``.

``KillingCheckpointIO`` makes a training process SIGKILL itself at an exact point of one checkpoint's
write, as a preemption could (optionally only in job ``job`` of a sweep, and only ``once``): ``after_rename``
(the file took its name, nothing after it ran) or ``before_rename`` (the temporary file half-written, not yet
renamed). ``RecordingCheckpointIO`` notes, just before each checkpoint is written, which logged values are already
on disk. A subprocess imports this module through PYTHONPATH (tests/integration), e.g.

    trainer.plugins=[{_target_:checkpoint_hooks.KillingCheckpointIO,step:8,file:last.ckpt,moment:after_rename}]
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig

from difflab.checkpoints import AtomicCheckpointIO

PLUGIN = "trainer.plugins=[{{_target_:checkpoint_hooks.{name}{args}}}]"


def plugin_override(name: str, **kwargs: Any) -> str:
    """The ``trainer.plugins=[...]`` override that installs ``name`` (a class of this module) with ``kwargs``."""
    return PLUGIN.format(name=name, args="".join(f",{k}:{v}" for k, v in kwargs.items()))


class KillingCheckpointIO(AtomicCheckpointIO):
    """Difflab's atomic checkpoint IO that SIGKILLs its process at ``moment`` of writing ``file`` at ``step``."""

    def __init__(self, step: int, file: str, moment: str, job: int | None = None, once: str | None = None) -> None:
        if moment not in ("after_rename", "before_rename"):
            raise ValueError(f"moment={moment!r}: after_rename or before_rename")
        self.step, self.file, self.moment = int(step), str(file), moment
        self.job = job  # kill only in this job of a sweep (hydra.job.num)
        self.once = Path(once) if once else None  # kill only while this marker file does not exist (then make it)

    def _armed(self, checkpoint: dict[str, Any], path: Any) -> bool:
        if checkpoint.get("global_step") != self.step or Path(path).name != self.file:
            return False
        if self.job is not None and HydraConfig.get().job.num != self.job:
            return False
        return self.once is None or not self.once.exists()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if not self._armed(checkpoint, path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if self.once is not None:
            self.once.touch()
        if self.moment == "before_rename":
            real_replace = os.replace

            def replace(src: Any, dst: Any) -> None:  # difflab.utils.files.atomic_write renames with os.replace
                if Path(dst) == Path(path):
                    os.truncate(src, os.path.getsize(src) // 2)  # the temporary file, half written
                    os.kill(os.getpid(), signal.SIGKILL)
                real_replace(src, dst)

            os.replace = replace
        super().save_checkpoint(checkpoint, path, storage_options)
        os.kill(os.getpid(), signal.SIGKILL)


RECORDS: list[dict[str, Any]] = []  # filled in-process by RecordingCheckpointIO


def csv_values(run: Path) -> dict[str, dict[int, float]]:
    """Every value in ``<run>/csv/metrics.csv`` as {name: {step: value}}, read from disk now."""
    out: dict[str, dict[int, float]] = {}
    path = run / "csv" / "metrics.csv"
    if path.is_file():
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                for name, value in row.items():
                    if value and name not in ("step", "epoch"):
                        out.setdefault(name, {})[int(row["step"])] = float(value)
    return out


def tensorboard_values(run: Path) -> dict[str, dict[int, float]]:
    """Every scalar in ``<run>/tensorboard``'s event files as {tag: {step: value}}, read from disk now."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for events in sorted((run / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in accumulator.Scalars(tag)})
    return out


class RecordingCheckpointIO(AtomicCheckpointIO):
    """Difflab's atomic checkpoint IO that first appends to :data:`RECORDS` what the run's CSV and TensorBoard
    files hold on disk at that moment, before the checkpoint takes its name."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        run = Path(path).parent.parent
        RECORDS.append({"file": Path(path).name, "step": checkpoint["global_step"], "csv": csv_values(run),
                        "tensorboard": tensorboard_values(run) if (run / "tensorboard").is_dir() else None})
        super().save_checkpoint(checkpoint, path, storage_options)


class NanBatchOnRank:
    """A callback that fills rank ``rank``'s batch of optimizer step ``step`` (1-based) with NaN, so that only that
    rank's loss is not finite: ``+callbacks.nan_batch={_target_:checkpoint_hooks.NanBatchOnRank,rank:1,step:3}``."""

    def __new__(cls, rank: int, step: int) -> Any:
        import pytorch_lightning as pl

        class _NanBatch(pl.Callback):
            def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
                if trainer.global_rank == rank and trainer.global_step + 1 == step:
                    batch[0].fill_(float("nan"))

        return _NanBatch()


class Stopped(Exception):
    """Raised by :class:`StopAfterStep`: the run dies there, as a killed one would."""


class StopAfterStep:
    """A callback that raises :class:`Stopped` once optimizer step ``step`` is over and checkpointed (at the start of
    the next batch): ``{_target_: checkpoint_hooks.StopAfterStep, step: 4}``."""

    def __new__(cls, step: int) -> Any:
        import pytorch_lightning as pl

        class _Stop(pl.Callback):
            def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
                if trainer.global_step == step:
                    raise Stopped(f"stopped after step {step}")

        return _Stop()
