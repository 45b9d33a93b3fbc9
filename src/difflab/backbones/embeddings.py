"""Sinusoidal timestep embedding, exactly as ``get_timestep_embedding`` in Ho et al.'s DDPM code."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SinusoidalTimeEmbedding", "timestep_embedding", "expand_timesteps", "resolve_labels"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Map timesteps ``t`` of shape [B] (int or float) to float32 embeddings of shape [B, dim].

    With ``half = dim // 2``: ``freqs_i = exp(-log(max_period) * i / (half - 1))`` and
    ``emb = concat(sin(t * freqs), cos(t * freqs))``, zero-padded by one column when ``dim`` is odd.
    """
    if t.ndim != 1:
        raise ValueError(f"timesteps must have shape [B], got shape {tuple(t.shape)}")
    half = dim // 2
    scale = math.log(max_period) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -scale)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class SinusoidalTimeEmbedding(nn.Module):
    """Parameter-free module wrapper around :func:`timestep_embedding`."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim < 4:
            raise ValueError(f"time embedding dim must be >= 4 (half-dim >= 2), got dim={dim}")
        self.dim = dim
        self.max_period = float(max_period)

    def forward(self, t: Tensor) -> Tensor:
        """``t``: [B] timesteps -> [B, dim] float32 embedding (autocast disabled for accuracy)."""
        with torch.autocast(device_type=t.device.type, enabled=False):
            return timestep_embedding(t, self.dim, self.max_period)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}"


def resolve_labels(y: Tensor | None, num_classes: int | None, batch: int, device: torch.device) -> Tensor | None:
    """Validate class labels; ``y=None`` becomes the null label ``num_classes``. Returns None if unconditional."""
    if num_classes is None:
        if y is not None:
            raise ValueError("class labels y were given but the backbone was built with num_classes=None")
        return None
    if y is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    if y.shape != (batch,):
        raise ValueError(f"class labels y must have shape [{batch}], got {tuple(y.shape)}")
    return y.long()


def expand_timesteps(t: Tensor, batch: int) -> Tensor:
    """Accept t of shape [B], [1] or [] and return shape [B]."""
    if t.ndim == 0 or t.shape == (1,):
        return t.reshape(1).expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"timesteps t must have shape [{batch}], got {tuple(t.shape)}")
    return t


class ConditionEmbedding(nn.Module):
    """The vector a backbone is conditioned on: an embedding of the timestep plus, for a class-conditional
    backbone, ``nn.Embedding(num_classes + 1, dim)`` of the label (index ``num_classes`` is the null label)."""

    def __init__(self, time_embed: nn.Module, dim: int, num_classes: int | None = None):
        super().__init__()
        self.time_embed = time_embed
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, dim) if num_classes is not None else None

    def forward(self, t: Tensor, y: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """[B, dim] embedding of timesteps ``t`` and labels ``y`` (None: the null label, or no label)."""
        emb = self.time_embed(expand_timesteps(t, batch))
        y = resolve_labels(y, self.num_classes, batch, device)
        return emb if y is None else emb + self.label_embed(y)
