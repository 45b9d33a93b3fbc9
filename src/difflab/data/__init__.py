"""Embedded datasets as LightningDataModules, with a resumable step-indexed training sampler."""

from difflab.data.base import ArrayDataModule
from difflab.data.digits import DigitsDataModule
from difflab.data.moons import MoonsDataModule
from difflab.data.sampling import StepBatchSampler
from difflab.data.shapes import ShapesDataModule, draw_shapes

DATAMODULES: dict[str, type[ArrayDataModule]] = {
    "moons": MoonsDataModule,
    "digits": DigitsDataModule,
    "shapes": ShapesDataModule,
}

__all__ = [
    "DATAMODULES",
    "ArrayDataModule",
    "DigitsDataModule",
    "MoonsDataModule",
    "ShapesDataModule",
    "StepBatchSampler",
    "draw_shapes",
]
