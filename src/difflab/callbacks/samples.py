"""SampleGrid: every N optimizer steps, draw a fixed set of samples from the EMA weights and save/log a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from difflab.callbacks.cadence import is_due
from difflab.samplers import Sampler
from difflab.scoring import metric_space
from difflab.utils.checks import check_int
from difflab.utils.images import samples_to_image, save_samples_image
from difflab.utils.logging import log_image

__all__ = ["SampleGrid"]


class SampleGrid(pl.Callback):
    """Saves ``<dirpath>/step_XXXXXXX.png`` (and ``final.png`` at the end) and sends it to the loggers.

    The same per-sample seeds are used every time, so successive grids show the same samples improving.
    """

    def __init__(
        self,
        dirpath: str,
        sampler: Callable[..., Sampler],
        every_n_steps: int = 1000,
        num_samples: int = 64,
        seed: int = 0,
        use_ema: bool = True,
        class_label: int | str | None = "all",
        guidance_scale: float = 1.0,
    ) -> None:
        check_int("callbacks.sample_grid.every_n_steps", every_n_steps, 1)
        check_int("callbacks.sample_grid.num_samples", num_samples, 1)
        self.dirpath = Path(dirpath)
        self.sampler_factory = sampler
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.seed = seed
        self.use_ema = use_ema
        self.class_label = class_label
        self.guidance_scale = guidance_scale
        self.last_path: Path | None = None

    def _draw(self, trainer: pl.Trainer, pl_module: Any, name: str) -> None:
        sampler = self.sampler_factory(schedule=pl_module.schedule)
        was_training = pl_module.training
        pl_module.eval()
        with torch.random.fork_rng(devices=[]):
            samples = pl_module.sample(
                sampler, self.num_samples, seed=self.seed, class_label=self.class_label,
                guidance_scale=self.guidance_scale, use_ema=self.use_ema,
            )
        pl_module.train(was_training)
        # 2-D points are drawn where the metrics see them (the moons' box space, whatever dataset.scaling), so a
        # standardised run's grid is not clipped at the plot's [-1.25, 1.25] box
        samples = metric_space(trainer.datamodule, samples.cpu())
        self.last_path = save_samples_image(samples, self.dirpath / f"{name}.png")
        log_image(trainer.loggers, "samples/grid", samples_to_image(samples), trainer.global_step)

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if is_due(trainer, batch_idx, self.every_n_steps):
            self._draw(trainer, pl_module, f"step_{trainer.global_step:07d}")

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._draw(trainer, pl_module, "final")
