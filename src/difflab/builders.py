"""Build the objects of a run from its (Hydra) config: used by every entry point, so a checkpoint's
saved config rebuilds exactly the model that wrote it.

The data facts (shape, classes, quantisation levels) are not in the config the user writes: the data module
states them (:class:`difflab.data.DataFacts`), :func:`build_module` sizes the model from them and records them
in the run config as ``data:``, which is how a checkpoint rebuilds its model without building the data.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from difflab.data import DataFacts, data_facts
from difflab.diffusion import NoiseSchedule
from difflab.module import DiffusionModule
from difflab.samplers import Sampler
from difflab.utils.checks import check_number

__all__ = ["build_datamodule", "build_schedule", "build_sampler", "build_backbone", "build_module", "shape_arguments",
           "to_container", "instantiate_all"]


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


def _data_of(cfg: DictConfig, shape: tuple[int, ...]) -> str:
    name = OmegaConf.select(cfg, "dataset.name")
    return f"{'the data' if name is None else f'dataset={name}'} gives data of shape {list(shape)}"


def shape_arguments(cfg: DictConfig, shape: tuple[int, ...]) -> dict[str, int]:
    """The backbone's arguments that follow from the data's shape: ``in_channels`` and ``image_size`` for a network
    of square images [C, S, S], ``data_dim`` for a network of vectors [D] (told apart by the parameters of
    ``backbone._target_``)."""
    target = cfg.backbone._target_
    try:
        parameters = inspect.signature(get_object(target)).parameters
    except (ImportError, AttributeError, ValueError, TypeError) as err:
        raise ValueError(f"backbone._target_={target!r} cannot be loaded: {err}") from None
    if "in_channels" in parameters and "image_size" in parameters:
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(f"backbone {target} takes square images [C, S, S], but {_data_of(cfg, shape)}; "
                             "choose backbone=mlp for points")
        return {"in_channels": shape[0], "image_size": shape[1]}
    if "data_dim" in parameters:
        if len(shape) != 1:
            raise ValueError(f"backbone {target} takes vectors [D], but {_data_of(cfg, shape)}; "
                             "choose a U-Net for images (backbone=unet_tiny, unet_small)")
        return {"data_dim": shape[0]}
    raise ValueError(f"backbone._target_={target!r} takes neither in_channels and image_size nor data_dim, "
                     "so it cannot be sized for the data")


def build_backbone(cfg: DictConfig, data: DataFacts | Any, objective: Any) -> Any:
    """The backbone for the data (a data module or its :class:`DataFacts`): its shape, the objective's outputs
    and, with ``conditioning.enabled``, the data's classes."""
    facts = data_facts(data)
    factor = getattr(objective, "output_channels_factor", 1)
    overrides: dict[str, Any] = {**shape_arguments(cfg, facts.shape), "out_channels": facts.shape[0] * factor}
    if cfg.conditioning.enabled:
        if not facts.num_classes:
            raise ValueError("conditioning.enabled=true needs a labelled dataset; "
                             f"dataset.name={OmegaConf.select(cfg, 'dataset.name')!r} has no classes")
        overrides["num_classes"] = facts.num_classes
    return instantiate(cfg.backbone, **overrides)


def build_module(cfg: DictConfig, data: DataFacts | Any, run_config: dict[str, Any] | None = None) -> DiffusionModule:
    """The DiffusionModule described by ``cfg`` (backbone, schedule, objective, optim, ema, conditioning, seed) for
    ``data``: a data module or its :class:`DataFacts`. The objective takes the data's ``num_bins`` when it has
    them (else its own setting). ``run_config`` (the resolved config that travels with every checkpoint) gets
    the facts as its ``data`` entry, in place."""
    facts = data_facts(data)
    objective = instantiate(cfg.objective, **({} if facts.num_bins is None else {"num_bins": facts.num_bins}))
    backbone = build_backbone(cfg, facts, objective)
    dropout = cfg.conditioning.label_dropout
    # checked even while conditioning is off, so a typo never waits to bite
    check_number("conditioning.label_dropout", dropout, 0.0, 1.0, high_open=True)
    optimizer = instantiate(cfg.optim.optimizer)
    try:  # the optimizer checks its own arguments (lr, betas, ...): let it, now
        optimizer(params=[torch.zeros(1, requires_grad=True)])
    except (ValueError, RuntimeError) as err:  # RuntimeError: e.g. fused and foreach both true
        raise ValueError(
            f"optim.optimizer: {err} ({OmegaConf.to_container(cfg.optim.optimizer, resolve=True)})") from None
    if run_config is not None:
        run_config["data"] = facts.as_config()
    return DiffusionModule(
        backbone=backbone,
        schedule=build_schedule(cfg),
        objective=objective,
        optimizer=optimizer,
        data_shape=facts.shape,
        warmup_steps=cfg.optim.warmup_steps,
        ema_decay=cfg.ema.decay if cfg.ema.enabled else None,
        ema_power=cfg.ema.power,
        seed=cfg.seed,
        num_classes=getattr(backbone, "num_classes", None),
        label_dropout=cfg.conditioning.label_dropout if cfg.conditioning.enabled else 0.0,
        run_config=run_config,
        ema_foreach=OmegaConf.select(cfg, "ema.foreach", default=True),
        **speed_arguments(cfg),
    )


def speed_arguments(cfg: DictConfig) -> dict[str, Any]:
    """The fast paths of ``cfg.speed`` as DiffusionModule arguments (a config without ``speed``, e.g. an older
    checkpoint's, gets the defaults)."""
    select = partial(OmegaConf.select, cfg)
    return {
        "finite_check_every_n_steps": select("speed.finite_check_every_n_steps", default=1),
        "channels_last": bool(select("speed.channels_last", default=False)),
        "compile": bool(select("speed.compile", default=False)),
        "compile_mode": select("speed.compile_mode", default=None),
    }


def instantiate_all(node: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a callbacks/logger group that has a ``_target_`` (factories may return None:
    skipped)."""
    if not node:
        return []
    built = [instantiate(v) for v in node.values() if isinstance(v, DictConfig) and "_target_" in v]
    return [obj for obj in built if obj is not None]
