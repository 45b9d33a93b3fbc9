"""BitsPerDim: the negative log-likelihood bound of the validation split, in bits/dim, every N steps."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info

__all__ = ["BitsPerDim"]


class BitsPerDim(pl.Callback):
    """Logs ``val/nll_bpd_n<N>_stride<k>`` (and the prior and decoder terms) from the EMA weights.

    The bound (Ho et al. 2020, eq. 5) is summed over all T steps with ``stride=1``; with ``stride=k`` one
    random timestep per block of k is evaluated and weighted by k (unbiased, noisier). The randomness is
    seeded, so successive evaluations differ only through the weights.
    """

    def __init__(self, every_n_steps: int = 600, max_batches: int | None = 1, stride: int = 10, seed: int = 0, use_ema: bool = True) -> None:
        if every_n_steps < 1 or stride < 1:
            raise ValueError(f"callbacks.nll: every_n_steps={every_n_steps!r} and stride={stride!r} must be >= 1")
        self.every_n_steps, self.max_batches, self.stride, self.seed, self.use_ema = every_n_steps, max_batches, stride, seed, use_ema
        self.history: list[tuple[int, float]] = []

    def evaluate(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, Any]:
        """The bound over (at most ``max_batches`` batches of) the validation loader."""
        loader = trainer.datamodule.val_dataloader()
        network = pl_module.sampling_network(self.use_ema)
        conditional = pl_module.num_classes is not None
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            return pl_module.objective.bits_per_dim(
                network if conditional else (lambda x, t: network(x, t)), pl_module.diffusion, loader,
                stride=self.stride, max_batches=self.max_batches, use_labels=conditional,
                device=pl_module.device, generator=generator,
            )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        result = self.evaluate(trainer, pl_module)
        name = f"val/nll_bpd_n{result['num_samples']}_stride{self.stride}"
        self.history.append((step, float(result["total_bpd"])))
        metrics = {name: result["total_bpd"], f"{name}_prior": result["prior_bpd"], f"{name}_decoder": result["decoder_bpd"]}
        pl_module.log_dict({k: float(v) for k, v in metrics.items()}, on_step=True, on_epoch=False, rank_zero_only=True)
        rank_zero_info(f"step {step}: {name} = {float(result['total_bpd']):.4f}")
