"""Build the objects of a run from its (Hydra) config: used by every entry point, so a checkpoint's
saved config rebuilds exactly the model that wrote it."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from difflab.module import DiffusionModule
from difflab.samplers import Sampler
from difflab.diffusion import NoiseSchedule

__all__ = ["build_datamodule", "build_schedule", "build_sampler", "build_backbone", "build_module", "to_container"]


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


def build_backbone(cfg: DictConfig, data_shape: tuple[int, ...], objective: Any) -> Any:
    """The backbone, sized for the objective's outputs and, with ``conditioning.enabled``, the dataset's classes."""
    factor = getattr(objective, "output_channels_factor", 1)
    overrides: dict[str, Any] = {"out_channels": data_shape[0] * factor}
    if cfg.conditioning.enabled:
        num_classes = cfg.dataset.get("num_classes")
        if not num_classes:
            raise ValueError(f"conditioning.enabled=true needs a labelled dataset; dataset.name={cfg.dataset.get('name')!r} has no classes")
        overrides["num_classes"] = num_classes
    return instantiate(cfg.backbone, **overrides)


def build_module(cfg: DictConfig, data_shape: tuple[int, ...], run_config: dict[str, Any] | None = None) -> DiffusionModule:
    """The DiffusionModule described by ``cfg`` (backbone, schedule, objective, optim, ema, conditioning, seed)."""
    objective = instantiate(cfg.objective)
    backbone = build_backbone(cfg, data_shape, objective)
    dropout = cfg.conditioning.label_dropout
    if not 0.0 <= dropout < 1.0:  # checked even while conditioning is off, so a typo never waits to bite
        raise ValueError(f"conditioning.label_dropout={dropout!r} must lie in [0, 1)")
    optimizer = instantiate(cfg.optim.optimizer)
    try:  # the optimizer checks its own arguments (lr, betas, ...): let it, now
        optimizer(params=[torch.zeros(1, requires_grad=True)])
    except ValueError as err:
        raise ValueError(f"optim.optimizer: {err} ({OmegaConf.to_container(cfg.optim.optimizer, resolve=True)})") from None
    return DiffusionModule(
        backbone=backbone,
        schedule=build_schedule(cfg),
        objective=objective,
        optimizer=optimizer,
        data_shape=data_shape,
        warmup_steps=cfg.optim.warmup_steps,
        ema_decay=cfg.ema.decay if cfg.ema.enabled else None,
        ema_power=cfg.ema.power,
        seed=cfg.seed,
        num_classes=getattr(backbone, "num_classes", None),
        label_dropout=cfg.conditioning.label_dropout if cfg.conditioning.enabled else 0.0,
        run_config=run_config,
    )
