"""Send pictures to whichever Lightning loggers are attached."""

from __future__ import annotations

from typing import Iterable

import numpy as np
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger

__all__ = ["log_image"]


def log_image(loggers: Iterable[Logger], key: str, image: np.ndarray, step: int) -> None:
    """Send a uint8 HxWxC image to every logger that stores images (TensorBoard, W&B); others skip it."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
