"""The peer contenders of difflab's training-step benchmark: the same DDPM U-Net built by difflab, by diffusers
(``UNet2DModel``) and by denoising-diffusion-pytorch (``Unet``), and each peer library's own idiomatic DDPM training
step around its network.

    .venv/bin/python benchmarks/peers.py                          # parameter counts + a few steps of each peer
    .venv/bin/python benchmarks/peers.py --size ddpm --batch 2 --steps 2

Sizes (``SIZES``):
  small  16x16, 1 channel. difflab: base_channels 32, channel_mults [1, 2, 2], 1 res block per level, attention at
         8x8 (and in the middle), dropout 0, GroupNorm(8) (conf/backbone/unet_small.yaml with dropout 0): 1,112,801
         parameters; the diffusers UNet2DModel of the same architecture has the same count. denoising-diffusion-pytorch:
         ``Unet(dim=32, dim_mults=(1, 2, 2), channels=1)`` with the library's defaults (1,409,665 parameters).
  ddpm   32x32, 3 channels: the DDPM CIFAR-10 network of Ho et al. 2020 (difflab: 35,746,307 parameters; diffusers:
         configured like google/ddpm-cifar10-32, same count). denoising-diffusion-pytorch cannot express it exactly
         (see ``ddpm_pytorch_unet``); its nearest network has its own count.

The training steps (``DiffusersStep``, ``DDPMPytorchStep``) share the recipe: t ~ U{0..999}, eps ~ N(0, I), the noised
x_t, an eps prediction, mean-squared error, backward, gradient clipping to norm 1, AdamW (lr 2e-4, torch defaults
otherwise), an EMA update of a shadow copy (max decay 0.9999). Each returns the loss detached (no host sync).
"""

from __future__ import annotations

import argparse
import math
import re
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

try:
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel  # DDIM*: sampling_throughput.py
    from diffusers.training_utils import EMAModel
    from ema_pytorch import EMA
except ImportError as err:
    raise SystemExit(f"benchmarks/ need the peer libraries ({err.name} is missing): "
                     "pip install -e '.[bench]'") from None

from difflab.backbones import UNet, count_parameters

__all__ = [
    "SIZES",
    "DDIMPipeline",
    "DDIMScheduler",
    "DDPMPytorchStep",
    "DiffusersStep",
    "ddpm_pytorch_unet",
    "difflab_unet",
    "difflab_unet_kwargs",
    "diffusers_config",
    "diffusers_unet",
    "load_difflab_weights",
    "count_parameters",
]

# Native resolution and channels of each size, and difflab's backbone settings for it.
SIZES: dict[str, dict] = {
    "small": {
        "image_size": 16,
        "channels": 1,
        "backbone": dict(
            base_channels=32, channel_mults=[1, 2, 2], num_res_blocks=1, attention_resolutions=[8], dropout=0.0,
            num_groups=8, num_heads=1,
        ),
    },
    "ddpm": {
        "image_size": 32,
        "channels": 3,
        "backbone": dict(
            base_channels=128, channel_mults=[1, 2, 2, 2], num_res_blocks=2, attention_resolutions=[16], dropout=0.1,
            num_groups=32, num_heads=1,
        ),
    },
}

LR = 2e-4
EMA_DECAY = 0.9999
MAX_GRAD_NORM = 1.0
NUM_TRAIN_TIMESTEPS = 1000


def _check_size(size: str) -> dict:
    if size not in SIZES:
        raise ValueError(f"size={size!r} is not known; choose one of {sorted(SIZES)}")
    return SIZES[size]


def difflab_unet_kwargs(size: str, image_size: int | None = None) -> dict:
    """Keyword arguments of ``difflab.backbones.UNet`` for ``size`` (at its native resolution unless given)."""
    spec = _check_size(size)
    return dict(
        in_channels=spec["channels"],
        image_size=spec["image_size"] if image_size is None else image_size,
        out_channels=spec["channels"],
        **{k: list(v) if isinstance(v, list) else v for k, v in spec["backbone"].items()},
    )


def difflab_unet(image_size: int, size: str) -> UNet:
    """difflab's DDPM U-Net for ``size`` at ``image_size``."""
    return UNet(**difflab_unet_kwargs(size, image_size))


def diffusers_config(kwargs: dict) -> dict:
    """``UNet2DModel`` config with the architecture of ``difflab.backbones.UNet(**kwargs)``.

    DDPM conventions in diffusers' names: timestep embedding sin-then-cos with exponent / (half - 1)
    (``flip_sin_to_cos=False, freq_shift=1``), GroupNorm eps 1e-6, stride-2 downsampling conv padded right/bottom
    (``downsample_padding=0``), one attention head over all channels (``attention_head_dim=None``), an attention
    block type wherever the level's resolution is in ``attention_resolutions``. For the ddpm size this is the config
    of google/ddpm-cifar10-32 (which omits dropout: 0.0 at inference) with the training dropout 0.1.
    """
    if kwargs.get("num_heads", 1) != 1:
        raise ValueError("diffusers' UNet2DModel takes one attention_head_dim for every level; only num_heads=1 maps")
    if kwargs.get("num_classes") is not None:
        raise ValueError("only unconditional U-Nets are mapped")
    base, mults, size = kwargs["base_channels"], list(kwargs["channel_mults"]), kwargs["image_size"]
    attn = set(kwargs["attention_resolutions"])
    with_attn = [size // 2**i in attn for i in range(len(mults))]
    return dict(
        sample_size=size,
        in_channels=kwargs["in_channels"],
        out_channels=kwargs.get("out_channels") or kwargs["in_channels"],
        block_out_channels=tuple(base * m for m in mults),
        layers_per_block=kwargs["num_res_blocks"],
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in with_attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(with_attn)),
        mid_block_type="UNetMidBlock2D",
        attention_head_dim=None,
        norm_num_groups=kwargs["num_groups"],
        norm_eps=1e-6,
        dropout=kwargs["dropout"],
        act_fn="silu",
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        time_embedding_type="positional",
        center_input_sample=False,
        mid_block_scale_factor=1,
        resnet_time_scale_shift="default",
    )


def diffusers_unet(image_size: int, size: str) -> UNet2DModel:
    """diffusers' ``UNet2DModel`` with the architecture (and parameter count) of difflab's U-Net for ``size``."""
    return UNet2DModel(**diffusers_config(difflab_unet_kwargs(size, image_size)))


def ddpm_pytorch_unet(image_size: int, size: str) -> Unet:
    """denoising-diffusion-pytorch's ``Unet`` nearest to difflab's U-Net for ``size`` (not the same architecture).

    Its ``Unet`` always has 2 res blocks per level (down) with RMSNorm and a scale-shift time projection, a 7x7 input
    conv, pixel-unshuffle downsampling and an attention layer at every level (linear attention where not full).
    small: ``Unet(dim=32, dim_mults=(1, 2, 2), channels=1)``, all else the library's defaults (dropout 0, full
           attention only at the innermost level and in the middle, 4 heads x 32).
    ddpm:  ``dim=128, dim_mults=(1, 2, 2, 2)``, dropout 0.1, full (softmax) attention at the 16x16 level and in the
           middle, each with one head as wide as its level (DDPM: one head over all channels); the per-level head
           setting also applies to the linear attention the library keeps at the other levels (4 x 32 there, except
           the innermost one, which shares its setting with the middle attention: 1 x 256).
    """
    spec = _check_size(size)
    if size == "small":
        net = Unet(dim=32, dim_mults=(1, 2, 2), channels=spec["channels"])
    else:
        kw = difflab_unet_kwargs(size, image_size)
        mults = tuple(kw["channel_mults"])
        full = tuple(image_size // 2**i in set(kw["attention_resolutions"]) for i in range(len(mults)))
        if not any(full):
            raise ValueError(f"image_size={image_size} has no level at resolutions {kw['attention_resolutions']}")
        width = [kw["base_channels"] * m for m in mults]
        # the last level's entry also sets the (always full) middle attention: one head of the innermost width
        heads = tuple(1 if f else 4 for f in full[:-1]) + (1,)
        dim_head = tuple(w if f else 32 for w, f in zip(width[:-1], full[:-1])) + (width[-1],)
        net = Unet(
            dim=kw["base_channels"], dim_mults=mults, channels=spec["channels"], dropout=kw["dropout"],
            full_attn=full, attn_heads=heads, attn_dim_head=dim_head,
        )
    if image_size % net.downsample_factor != 0:
        raise ValueError(f"image_size={image_size} must be a multiple of {net.downsample_factor}")
    return net


# ------------------------------------------------------------------------------------------- shared weights
_RENAMES = [  # difflab state-dict name -> diffusers UNet2DModel name (every rule applied, in this order)
    (r"^cond\.time_embed\.1\.", "time_embedding.linear_1."),
    (r"^cond\.time_embed\.3\.", "time_embedding.linear_2."),
    (r"^(down|up)\.(\d+)\.blocks\.(\d+)\.", r"\1_blocks.\2.resnets.\3."),
    (r"^(down|up)\.(\d+)\.attn\.(\d+)\.", r"\1_blocks.\2.attentions.\3."),
    (r"^down\.(\d+)\.resample\.", r"down_blocks.\1.downsamplers.0."),
    (r"^up\.(\d+)\.resample\.", r"up_blocks.\1.upsamplers.0."),
    (r"^mid_block1\.", "mid_block.resnets.0."),
    (r"^mid_block2\.", "mid_block.resnets.1."),
    (r"^mid_attn\.", "mid_block.attentions.0."),
    (r"^norm_out\.", "conv_norm_out."),
    (r"\.temb_proj\.", ".time_emb_proj."),
    (r"\.shortcut\.", ".conv_shortcut."),
    (r"(attentions\.\d+)\.norm\.", r"\1.group_norm."),
    (r"(attentions\.\d+)\.(q|k|v)\.", r"\1.to_\2."),
    (r"(attentions\.\d+)\.proj_out\.", r"\1.to_out.0."),
]


def _diffusers_name(name: str) -> str:
    for pattern, repl in _RENAMES:
        name = re.sub(pattern, repl, name)
    return name


@torch.no_grad()
def load_difflab_weights(dst: UNet2DModel, src: UNet) -> None:
    """Copy the weights of difflab ``src`` into the diffusers ``dst`` of the same architecture (1x1 convs -> linears).

    Every tensor of both state dicts must be matched with the same number of elements, else a ValueError.
    """
    target = dst.state_dict()
    mapped = {_diffusers_name(k): v for k, v in src.state_dict().items()}
    missing, unexpected = sorted(set(target) - set(mapped)), sorted(set(mapped) - set(target))
    if missing or unexpected:
        raise ValueError(f"difflab -> diffusers weights: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, value in mapped.items():
        if value.numel() != target[name].numel():
            raise ValueError(f"{name}: {tuple(value.shape)} does not fit {tuple(target[name].shape)}")
        target[name].copy_(value.reshape(target[name].shape))


# ------------------------------------------------------------------------------------------- training steps
def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


class DiffusersStep:
    """diffusers' DDPM training step, as its train_unconditional example: ``DDPMScheduler(num_train_timesteps=1000)``
    and ``add_noise``, eps MSE, ``clip_grad_norm_``, AdamW, ``EMAModel`` (warm-up, power 3/4, max decay 0.9999)."""

    def __init__(self, net: UNet2DModel, image_size: int, foreach_ema: bool = False) -> None:
        self.net = net.train()
        self.image_size = image_size
        self.scheduler = DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS)  # linear betas 1e-4..0.02 (DDPM)
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=LR)
        self.ema = EMAModel(
            net.parameters(), decay=EMA_DECAY, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4, foreach=foreach_ema,
            model_cls=UNet2DModel, model_config=net.config,
        )

    def __call__(self, x0: Tensor) -> Tensor:
        """One optimizer step on the batch ``x0`` ([B, C, H, W] in [-1, 1]); returns the loss, detached."""
        if x0.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} images, got {tuple(x0.shape)}")
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device).long()
        noisy = self.scheduler.add_noise(x0, noise, t)
        eps = self.net(noisy, t, return_dict=False)[0]
        loss = F.mse_loss(eps.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(self.net.parameters())
        return loss.detach()


class DDPMPytorchStep:
    """denoising-diffusion-pytorch's DDPM training step, as its ``Trainer``: ``GaussianDiffusion(...)(x0)`` is the
    loss, backward, ``clip_grad_norm_``, optimizer step, ``ema_pytorch.EMA`` of the whole diffusion module.

    Overridden defaults: ``objective="pred_noise"`` (default pred_v), ``beta_schedule="linear"`` (default sigmoid),
    ``auto_normalize=False`` (the default maps [0, 1] inputs to [-1, 1]; the batches here are already in [-1, 1]);
    ``min_snr_loss_weight`` stays False, so the loss weight is snr/snr = 1: plain eps MSE. The Trainer's
    Adam(betas=(0.9, 0.99)) becomes AdamW with torch defaults, lr 2e-4; its EMA(update_every=10, decay 0.995) becomes
    ``EMA(beta=0.9999, update_every=1, update_after_step=0)`` so every step pays a lerp (by default the first 100
    updates are plain copies).
    """

    def __init__(self, net: Unet, image_size: int, foreach_ema: bool = False) -> None:
        self.diffusion = GaussianDiffusion(
            net, image_size=image_size, timesteps=NUM_TRAIN_TIMESTEPS, objective="pred_noise", beta_schedule="linear",
            auto_normalize=False, min_snr_loss_weight=False, offset_noise_strength=0.0,
        ).to(_device(net))
        self.diffusion.train()
        self.optimizer = torch.optim.AdamW(self.diffusion.parameters(), lr=LR)
        self.ema = EMA(self.diffusion, beta=EMA_DECAY, update_every=1, update_after_step=0, use_foreach=foreach_ema)
        self.ema.to(_device(net))

    def __call__(self, x0: Tensor) -> Tensor:
        """One optimizer step on the batch ``x0`` ([B, C, H, W] in [-1, 1]); returns the loss, detached."""
        loss = self.diffusion(x0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.diffusion.parameters(), MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update()
        return loss.detach()


# ------------------------------------------------------------------------------------------- smoke run
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per peer, after one warm-up step")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print("parameters       small (16x16x1)   ddpm (32x32x3)")
    builders = [("difflab", difflab_unet), ("diffusers", diffusers_unet), ("ddpm-pytorch", ddpm_pytorch_unet)]
    for name, build in builders:
        counts = [count_parameters(build(SIZES[s]["image_size"], s)) for s in ("small", "ddpm")]
        print(f"{name:<14} {counts[0]:>13,} {counts[1]:>16,}")

    spec = SIZES[args.size]
    size, ch = spec["image_size"], spec["channels"]
    x0 = torch.rand(args.batch, ch, size, size) * 2 - 1
    peers = [
        ("diffusers", DiffusersStep(diffusers_unet(size, args.size), size)),
        ("ddpm-pytorch", DDPMPytorchStep(ddpm_pytorch_unet(size, args.size), size)),
    ]
    print(f"\nsize={args.size} batch={args.batch} steps={args.steps} threads={args.threads} (smoke run, not a result)")
    for name, step in peers:
        step(x0)  # warm-up
        start = time.perf_counter()
        losses = [step(x0) for _ in range(args.steps)]
        seconds = (time.perf_counter() - start) / args.steps
        loss = torch.stack(losses).mean().item()
        assert math.isfinite(loss), f"{name}: loss is not finite"
        print(f"{name:<14} {seconds * 1e3:9.1f} ms/step   mean loss {loss:.4f}")


if __name__ == "__main__":
    main()
