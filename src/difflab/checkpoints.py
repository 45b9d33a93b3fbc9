"""Write checkpoints atomically after the logs, read them safely, and rebuild the model from the config they carry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from difflab.builders import build_module
from difflab.callbacks.flush_loggers import FlushLoggers
from difflab.errors import ConfigError
from difflab.module import CHECKPOINT_KEY, DiffusionModule
from difflab.utils.files import atomic_torch_save

__all__ = ["AtomicCheckpointIO", "make_trainer", "load_checkpoint", "module_from_checkpoint"]


def make_trainer(callbacks: list[pl.Callback] | None = None, **kwargs: Any) -> pl.Trainer:
    """``pl.Trainer(callbacks=..., **kwargs)`` with :class:`FlushLoggers` added (``conf/trainer``'s target):
    whatever the callbacks, nothing logged before a checkpoint is lost when the run dies after it."""
    callbacks = list(callbacks or [])
    if not any(isinstance(c, FlushLoggers) for c in callbacks):
        callbacks.append(FlushLoggers())
    return pl.Trainer(callbacks=callbacks, **kwargs)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic local writes and reads that cannot run code from the file.

    Lightning's own save writes through an fsspec transaction whose temporary file may sit on another
    filesystem (then the final move is a copy that a kill can cut short) and is never fsynced; loading for a
    resume would unpickle arbitrary objects. Here every save goes through :func:`atomic_torch_save` and every
    load uses ``weights_only=True``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Callable | None = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return torch.load(path, map_location=map_location, weights_only=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code in the file can run) and check it is difflab's."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={str(path)!r} does not exist or is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a loadable checkpoint"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"ckpt_path={str(path)!r} is not a loadable checkpoint: {first}") from err
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt_path={str(path)!r} is not a difflab checkpoint (it has no '{CHECKPOINT_KEY}' entry)")
    return checkpoint


def module_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[DiffusionModule, DictConfig]:
    """The DiffusionModule saved in ``checkpoint`` (raw and EMA weights loaded) and its run config.

    The model is sized from the data facts the run config records (``data: {shape, num_classes, num_bins}``),
    so the data itself is never built or read.
    """
    from difflab.data import DataFacts

    config = checkpoint[CHECKPOINT_KEY]["config"]
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise ConfigError("the checkpoint's config records no data facts (data: shape, num_classes, num_bins), "
                          "so its model cannot be rebuilt; it predates them: "
                          "train it again with this version of difflab")
    cfg = OmegaConf.create(config)
    module = build_module(cfg, DataFacts.from_config(config["data"]))
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), cfg
