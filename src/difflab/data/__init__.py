"""Datasets as LightningDataModules (embedded, procedural and real image data), with a resumable step-indexed
training sampler; each states its data facts (shape, classes, quantisation levels) for the model."""

from difflab.data.base import ArrayDataModule, DataFacts, data_facts
from difflab.data.digits import DigitsDataModule
from difflab.data.image_folder import ImageFolderDataModule
from difflab.data.images import ImageDataModule, UInt8ImageDataset
from difflab.data.moons import MoonsDataModule
from difflab.data.sampling import StepBatch, StepBatchSampler
from difflab.data.shapes import ShapesDataModule, draw_shapes
from difflab.data.torchvision_sets import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule

DATAMODULES: dict[str, type[ArrayDataModule]] = {
    "moons": MoonsDataModule,
    "digits": DigitsDataModule,
    "shapes": ShapesDataModule,
    "mnist": MNISTDataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "cifar10": CIFAR10DataModule,
    "image_folder": ImageFolderDataModule,
}

__all__ = [
    "DATAMODULES",
    "ArrayDataModule",
    "CIFAR10DataModule",
    "DataFacts",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "MoonsDataModule",
    "ShapesDataModule",
    "StepBatch",
    "StepBatchSampler",
    "UInt8ImageDataset",
    "data_facts",
    "draw_shapes",
]
