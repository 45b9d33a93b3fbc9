"""Read difflab checkpoints safely and rebuild the model from the config they carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from difflab.builders import build_module
from difflab.cli import ConfigError
from difflab.module import CHECKPOINT_KEY, DiffusionModule

__all__ = ["load_checkpoint", "module_from_checkpoint"]


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
    """The DiffusionModule saved in ``checkpoint`` (raw and EMA weights loaded) and its run config."""
    meta = checkpoint[CHECKPOINT_KEY]
    cfg = OmegaConf.create(meta["config"])
    module = build_module(cfg, tuple(meta["data_shape"]))
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), cfg
