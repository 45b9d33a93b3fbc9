"""DDPM U-Net (Ho et al. 2020, ``diffusion_tf/models/unet.py``), with optional class conditioning.

The default arguments reproduce the paper's CIFAR-10 model (35,746,307 parameters). As in the reference,
conv/linear weights use Xavier-uniform init with zero biases, and the last conv of every residual block,
every attention output projection and the output conv are zero-initialised, so a fresh model outputs 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.utils.checks import check_int

from .embeddings import ConditionEmbedding, SinusoidalTimeEmbedding

__all__ = ["UNet", "count_parameters"]

_GN_EPS = 1e-6  # tf.contrib.layers.group_norm default, as in the reference


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResnetBlock(nn.Module):
    """GN-SiLU-conv, + Linear(SiLU(temb)), GN-SiLU-dropout-conv (zero-init), 1x1 conv shortcut if channels change."""

    def __init__(self, in_ch: int, out_ch: int, temb_ch: int, dropout: float, num_groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_ch, eps=_GN_EPS)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, out_ch)
        self.norm2 = nn.GroupNorm(num_groups, out_ch, eps=_GN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class AttnBlock(nn.Module):
    """Multi-head (single by default) self-attention over all pixels, with 1x1-conv q, k, v and output projection."""

    def __init__(self, ch: int, num_groups: int, num_heads: int = 1):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, ch, eps=_GN_EPS)
        self.q, self.k, self.v = (nn.Conv2d(ch, ch, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        h = self.norm(x)

        def heads(z: Tensor) -> Tensor:  # [B, C, H, W] -> [B, heads, HW, C/heads]
            return z.reshape(b, self.num_heads, c // self.num_heads, hgt * wid).transpose(-1, -2)

        out = F.scaled_dot_product_attention(heads(self.q(h)), heads(self.k(h)), heads(self.v(h)))
        out = out.transpose(-1, -2).reshape(b, c, hgt, wid)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """3x3 conv with stride 2; pads right/bottom only, like TF's ``SAME`` padding in the reference."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 conv."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """Res blocks (each optionally followed by attention) at one resolution, plus an optional resampler."""

    def __init__(self, blocks: list[ResnetBlock], attn: list[nn.Module], resample: nn.Module | None):
        super().__init__()
        self.blocks, self.attn, self.resample = nn.ModuleList(blocks), nn.ModuleList(attn), resample


class UNet(nn.Module):
    """DDPM U-Net denoiser ``f(x_t, t[, y])`` for images [B, C, H, W].

    ``channel_mults[i]`` sets the width ``base_channels * channel_mults[i]`` of level ``i`` (resolution
    ``image_size / 2**i``); attention follows every res block at resolutions in ``attention_resolutions``
    and in the middle. With ``num_classes`` set, ``nn.Embedding(num_classes + 1, 4 * base_channels)`` is
    added to the time embedding; label ``num_classes`` (also used when ``y is None``) is the null label.
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        base_channels: int = 128,
        channel_mults: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        num_groups: int = 32,
        num_heads: int = 1,
        out_channels: int | None = None,
        num_classes: int | None = None,
    ):
        super().__init__()
        channel_mults, attention_resolutions = tuple(channel_mults), tuple(attention_resolutions)
        resolutions = _validate(
            image_size, base_channels, channel_mults, num_res_blocks, attention_resolutions, dropout, num_groups,
            num_heads, num_classes,
        )
        self.in_channels, self.image_size, self.num_classes = in_channels, image_size, num_classes
        self.out_channels = out_channels if out_channels is not None else in_channels
        ch, temb_ch = base_channels, 4 * base_channels

        time_embed = nn.Sequential(
            SinusoidalTimeEmbedding(ch), nn.Linear(ch, temb_ch), nn.SiLU(), nn.Linear(temb_ch, temb_ch)
        )
        self.cond = ConditionEmbedding(time_embed, temb_ch, num_classes)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)

        def attn(c: int, res: int) -> list[nn.Module]:
            return [AttnBlock(c, num_groups, num_heads)] if res in attention_resolutions else []

        # Downsampling path; skip_chs records the channels of every tensor pushed on the skip stack.
        skip_chs, cur = [ch], ch
        self.down = nn.ModuleList()
        for i, (mult, res) in enumerate(zip(channel_mults, resolutions)):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(cur, ch * mult, temb_ch, dropout, num_groups))
                cur = ch * mult
                attns += attn(cur, res)
                skip_chs.append(cur)
            last = i == len(channel_mults) - 1
            self.down.append(_Level(blocks, attns, None if last else Downsample(cur)))
            if not last:
                skip_chs.append(cur)

        self.mid_block1 = ResnetBlock(cur, cur, temb_ch, dropout, num_groups)
        self.mid_attn = AttnBlock(cur, num_groups, num_heads)
        self.mid_block2 = ResnetBlock(cur, cur, temb_ch, dropout, num_groups)

        # Upsampling path, lowest resolution first; each res block consumes one skip tensor.
        self.up = nn.ModuleList()
        for i in reversed(range(len(channel_mults))):
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(cur + skip_chs.pop(), ch * channel_mults[i], temb_ch, dropout, num_groups))
                cur = ch * channel_mults[i]
                attns += attn(cur, resolutions[i])
            self.up.append(_Level(blocks, attns, Upsample(cur) if i != 0 else None))

        self.norm_out = nn.GroupNorm(num_groups, cur, eps=_GN_EPS)
        self.conv_out = nn.Conv2d(cur, self.out_channels, 3, padding=1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, ResnetBlock):
                _zero(m.conv2)
            elif isinstance(m, AttnBlock):
                _zero(m.proj_out)
        _zero(self.conv_out)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """``x``: [B, C, H, W], ``t``: [B] timesteps, ``y``: optional [B] labels -> [B, out_channels, H, W]."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects x of shape [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        emb = self.cond(t, y, x.shape[0], x.device)

        hs = [self.conv_in(x)]
        for level in self.down:
            for j, block in enumerate(level.blocks):
                h = block(hs[-1], emb)
                hs.append(level.attn[j](h) if level.attn else h)
            if level.resample is not None:
                hs.append(level.resample(hs[-1]))

        h = self.mid_block2(self.mid_attn(self.mid_block1(hs[-1], emb)), emb)

        for level in self.up:
            for j, block in enumerate(level.blocks):
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
                if level.attn:
                    h = level.attn[j](h)
            if level.resample is not None:
                h = level.resample(h)

        return self.conv_out(F.silu(self.norm_out(h)))


def _validate(
    image_size: int,
    base_channels: int,
    channel_mults: tuple[int, ...],
    num_res_blocks: int,
    attention_resolutions: tuple[int, ...],
    dropout: float,
    num_groups: int,
    num_heads: int,
    num_classes: int | None,
) -> list[int]:
    """Raise a ValueError naming the offending value; return the resolution of each level."""
    if len(channel_mults) == 0:
        raise ValueError("backbone.channel_mults is empty; give at least one multiplier, e.g. [1, 2, 2, 2]")
    if any(m < 1 for m in channel_mults):
        raise ValueError(f"backbone.channel_mults={list(channel_mults)} must contain only integers >= 1")
    check_int("backbone.num_res_blocks", num_res_blocks, 1)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"backbone.dropout={dropout} must be in [0, 1)")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"backbone.num_classes={num_classes} must be None or >= 1")
    factor = 2 ** (len(channel_mults) - 1)
    if image_size < 1 or image_size % factor != 0:
        raise ValueError(
            f"backbone.image_size={image_size} must be a positive multiple of {factor} "
            f"(2**(len(channel_mults)-1) for channel_mults={list(channel_mults)})"
        )
    resolutions = [image_size // 2**i for i in range(len(channel_mults))]
    for r in attention_resolutions:
        if r not in resolutions:
            raise ValueError(
                f"backbone.attention_resolutions contains {r}, but this U-Net only has resolutions "
                f"{resolutions} for image_size={image_size}"
            )
    for c in sorted({base_channels} | {base_channels * m for m in channel_mults}):
        if num_groups < 1 or c % num_groups != 0:
            raise ValueError(
                f"backbone.num_groups={num_groups} does not divide channel count {c} "
                f"(base_channels={base_channels} x channel_mults={list(channel_mults)}); "
                f"GroupNorm needs every channel count divisible by num_groups"
            )
    attn_chs = {base_channels * m for m, r in zip(channel_mults, resolutions) if r in attention_resolutions}
    attn_chs.add(base_channels * channel_mults[-1])  # middle attention
    for c in sorted(attn_chs):
        if num_heads < 1 or c % num_heads != 0:
            raise ValueError(f"backbone.num_heads={num_heads} does not divide attention channel count {c}")
    return resolutions
