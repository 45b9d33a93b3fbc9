"""Denoising network backbones: a residual MLP for flat data and the DDPM U-Net for images."""

from .embeddings import SinusoidalTimeEmbedding
from .mlp import MLP
from .unet import UNet, count_parameters

__all__ = ["SinusoidalTimeEmbedding", "MLP", "UNet", "count_parameters"]
