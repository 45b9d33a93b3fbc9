"""Build the objects of a run from its (Hydra) config: used by every entry point, so a checkpoint's
saved config rebuilds exactly the model that wrote it."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from difflab.module import DiffusionModule
from difflab.samplers import Sampler
from difflab.diffusion import NoiseSchedule

__all__ = ["build_datamodule", "build_schedule", "build_sampler", "build_module", "to_container"]


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The fully resolved config as plain Python containers (what travels with a checkpoint)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The dataset's LightningDataModule (nothing is loaded until ``setup``)."""
    return instantiate(cfg.dataset)


def build_schedule(cfg: DictConfig) -> NoiseSchedule:
    """The noise schedule of ``cfg.schedule``."""
    return instantiate(cfg.schedule)


def build_sampler(sampler_cfg: DictConfig, schedule: NoiseSchedule) -> Sampler:
    """A sampler from a ``sampler`` config node (a ``_partial_`` of ``make_sampler``) for ``schedule``."""
    return instantiate(sampler_cfg)(schedule=schedule)


def build_module(cfg: DictConfig, data_shape: tuple[int, ...], run_config: dict[str, Any] | None = None) -> DiffusionModule:
    """The DiffusionModule described by ``cfg`` (backbone, schedule, objective, optim, ema, seed)."""
    return DiffusionModule(
        backbone=instantiate(cfg.backbone),
        schedule=build_schedule(cfg),
        objective=instantiate(cfg.objective),
        optimizer=instantiate(cfg.optim.optimizer),
        data_shape=data_shape,
        warmup_steps=cfg.optim.warmup_steps,
        ema_decay=cfg.ema.decay if cfg.ema.enabled else None,
        ema_power=cfg.ema.power,
        seed=cfg.seed,
        num_classes=cfg.backbone.get("num_classes"),
        run_config=run_config,
    )
