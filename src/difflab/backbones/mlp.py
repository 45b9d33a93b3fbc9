"""Time-conditioned residual MLP for flat (e.g. 2-D toy) data."""

from __future__ import annotations

from torch import Tensor, nn

from difflab.utils.checks import check_int

from .embeddings import ConditionEmbedding, SinusoidalTimeEmbedding

__all__ = ["MLP"]


class _ResBlock(nn.Module):
    """Pre-norm residual block: h + Linear(dropout(SiLU(LayerNorm(h) + temb)))."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.act = nn.SiLU()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, dim)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.fc(self.drop(self.act(self.norm(h) + emb)))


class MLP(nn.Module):
    """Residual MLP denoiser ``f(x_t, t[, y])`` for data of shape [B, data_dim].

    The timestep goes through a sinusoidal embedding and a 2-layer MLP to a ``hidden_dim`` vector that is
    added inside every residual block. With ``num_classes`` set, ``nn.Embedding(num_classes + 1, hidden_dim)``
    is added to it; label ``num_classes`` (also used when ``y is None``) is the null label for CFG.
    The defaults (hidden 128, 3 blocks) give ~63k parameters for 2-D data.
    """

    def __init__(
        self,
        data_dim: int = 2,
        hidden_dim: int = 128,
        num_layers: int = 3,
        time_embed_dim: int = 64,
        num_classes: int | None = None,
        out_channels: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_int("backbone.data_dim", data_dim, 1)
        check_int("backbone.hidden_dim", hidden_dim, 1)
        check_int("backbone.num_layers", num_layers, 1)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"backbone.dropout must be in [0, 1), got {dropout}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"backbone.num_classes must be None or >= 1, got {num_classes}")
        self.data_dim, self.num_classes = data_dim, num_classes
        self.out_channels = out_channels if out_channels is not None else data_dim

        time_embed = nn.Sequential(
            SinusoidalTimeEmbedding(time_embed_dim),
            nn.Linear(time_embed_dim, time_embed_dim),
            nn.SiLU(),
            nn.Linear(time_embed_dim, hidden_dim),
        )
        self.cond = ConditionEmbedding(time_embed, hidden_dim, num_classes)
        self.input = nn.Linear(data_dim, hidden_dim)
        self.blocks = nn.ModuleList(_ResBlock(hidden_dim, dropout) for _ in range(num_layers))
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, self.out_channels))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """``x``: [B, data_dim], ``t``: [B] timesteps, ``y``: optional [B] labels -> [B, out_channels]."""
        if x.ndim != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"MLP expects x of shape [B, {self.data_dim}], got {tuple(x.shape)}")
        emb = self.cond(t, y, x.shape[0], x.device)
        h = self.input(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
