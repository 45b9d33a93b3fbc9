"""DiffusionModule: wires a backbone, a noise schedule and an objective into a LightningModule."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from difflab.diffusion import DiffusionObjective, GaussianDiffusion, NoiseSchedule, timestep_quartile_means
from difflab.ema import ExponentialMovingAverage
from difflab.samplers import Sampler
from difflab.samplers.base import StepCallback, randn_like
from difflab.samplers.guidance import class_labels, guided_model_fn
from difflab.speed import channels_last_format, check_compile_mode, clip_grad_norm, compile_networks
from difflab.utils.checks import check_int, check_number
from difflab.utils.seeding import Stream, derive_seed, per_sample_generators

__all__ = ["DiffusionModule", "CHECKPOINT_KEY"]

CHECKPOINT_KEY = "difflab"


def linear_warmup(warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier rising linearly from 1/warmup_steps to 1 over ``warmup_steps`` optimizer steps."""
    return lambda step: min(1.0, (step + 1) / warmup_steps)


class DiffusionModule(pl.LightningModule):
    """Trains ``backbone`` to denoise under ``schedule`` with ``objective``; samples from the EMA weights.

    Randomness of a training step (timesteps, noise, dropout) is seeded from (seed, rank, global step),
    so a resumed run draws exactly what an uninterrupted one would have.
    """

    def __init__(
        self,
        backbone: nn.Module,
        schedule: NoiseSchedule,
        objective: DiffusionObjective,
        optimizer: Callable[..., torch.optim.Optimizer],
        data_shape: Sequence[int],
        warmup_steps: int = 0,
        ema_decay: float | None = 0.9999,
        ema_power: float | None = 2.0 / 3.0,
        seed: int = 0,
        num_classes: int | None = None,
        label_dropout: float = 0.0,
        run_config: dict[str, Any] | None = None,
        finite_check_every_n_steps: int = 1,
        ema_foreach: bool = True,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
    ) -> None:
        super().__init__()
        check_int("optim.warmup_steps", warmup_steps, 0)
        check_int("speed.finite_check_every_n_steps", finite_check_every_n_steps, 1)
        self.backbone = backbone
        self.schedule = schedule
        self.diffusion = GaussianDiffusion(schedule)
        self.objective = objective
        self.optimizer_factory = optimizer
        self.data_shape = tuple(int(d) for d in data_shape)
        self.warmup_steps = warmup_steps
        self.seed = seed
        self.num_classes = num_classes
        check_number("conditioning.label_dropout", label_dropout, 0.0, 1.0, high_open=True)
        self.label_dropout = label_dropout
        self.memory_format = channels_last_format(channels_last, self.data_shape)
        if self.memory_format == torch.channels_last:  # before the EMA copy, so that the copy is laid out alike
            backbone.to(memory_format=self.memory_format)
        self.ema = (ExponentialMovingAverage(backbone, ema_decay, ema_power, foreach=ema_foreach)
                    if ema_decay is not None else None)
        check_compile_mode(compile_mode)  # checked even while compile is off, so a typo never waits to bite
        if compile:
            compile_networks([backbone] + ([self.ema.shadow] if self.ema is not None else []), compile_mode)
        self.run_config = run_config
        self.finite_check_every_n_steps = finite_check_every_n_steps
        self._recent_losses: list[tuple[int, torch.Tensor]] = []  # (step, loss) not yet checked for finiteness

    # ----------------------------------------------------------------------------------- networks
    def sampling_network(self, use_ema: bool = True) -> nn.Module:
        """The EMA network when there is one and ``use_ema``, else the raw backbone."""
        return self.ema.shadow if (use_ema and self.ema is not None) else self.backbone

    def model_fn(
        self, network: nn.Module, y: torch.Tensor | None = None, guidance_scale: float = 1.0
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``model_fn(x_t, t)`` for samplers: labels ``y`` bound, and classifier-free guidance when conditional."""
        if y is None or self.num_classes is None:
            return lambda x, t: network(x, t)
        return guided_model_fn(network, y, self.num_classes, guidance_scale)

    # ----------------------------------------------------------------------------------- training
    def _step_seed(self, batch_idx: int) -> int:
        micro = batch_idx % max(1, self.trainer.accumulate_grad_batches)
        return derive_seed(self.seed, Stream.TRAIN_STEP, self.global_rank, self.global_step, micro)

    def _loss(
        self,
        batch: Sequence[torch.Tensor],
        generator: torch.Generator | None = None,
        terms: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The batch's mean loss. ``terms``, when given, receives the objective's per-sample terms and ``t``."""
        x0, y = batch[0], (batch[1] if len(batch) > 1 and self.num_classes else None)
        x0 = x0.contiguous(memory_format=self.memory_format)
        if y is not None and self.training and self.label_dropout > 0:
            # Classifier-free guidance training: some labels become the null label num_classes.
            drop = torch.rand(y.shape, device=y.device, generator=generator) < self.label_dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), device=x0.device, generator=generator)
        noise = randn_like(x0, generator)
        network = self.backbone if y is None else partial(self.backbone, y=y)
        out = self.objective.terms(network, self.diffusion, x0, t, noise)
        if terms is not None:
            terms.update(out, t=t)
        return out["loss"].mean()

    def _log_train_terms(self, terms: dict[str, torch.Tensor], batch_size: int) -> None:
        """Per step, this rank's batch only (no sync): the loss's terms (``train/loss_simple``, ``train/loss_vlb``) and
        the loss by quartile of t (``train/loss_q0``..``q3``, a quartile only when the batch has samples in it)."""
        for name in ("simple", "vlb"):
            if name in terms:
                value = terms[name].detach().mean()
                self.log(f"train/loss_{name}", value, on_step=True, on_epoch=False, batch_size=batch_size)
        for q, value in timestep_quartile_means(terms["loss"], terms["t"], self.schedule.num_timesteps).items():
            self.log(f"train/loss_q{q}", value, on_step=True, on_epoch=False, batch_size=batch_size)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        torch.manual_seed(self._step_seed(batch_idx))
        terms: dict[str, torch.Tensor] = {}
        loss = self._loss(batch, terms=terms)
        # The loss is read on the host only every finite_check_every_n_steps steps (and before anything uses the
        # weights: a checkpoint, validation, scoring, the end of training), so that on a GPU the other steps queue
        # their work without waiting for it. Raised before backward: no optimizer step follows the check.
        self._recent_losses.append((self.global_step + 1, loss.detach()))
        if (self.global_step + 1) % self.finite_check_every_n_steps == 0:
            self.check_finite_loss()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch[0].shape[0])
        if self._logs_this_step():
            self._log_train_terms(terms, batch[0].shape[0])
        return loss

    def _logs_this_step(self) -> bool:
        """Whether Lightning sends this step's values to the loggers (its log_every_n_steps cadence)."""
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def check_finite_loss(self) -> None:
        """Raise FloatingPointError naming the first step whose training loss was not finite, among the steps since
        the last check (one host sync). Decided together over ranks: every rank calls it at the same point, so that
        under DDP every rank stops at the same step instead of the others waiting for ever in the next all-reduce."""
        recent, self._recent_losses = self._recent_losses, []
        first: tuple[int, float] | None = None
        if recent:
            losses = torch.stack([loss.float() for _, loss in recent]).cpu()
            bad = (~torch.isfinite(losses)).nonzero()
            if len(bad):
                first = (recent[int(bad[0])][0], float(losses[int(bad[0])]))
        if not self.trainer.strategy.reduce_boolean_decision(first is not None, all=False):
            return
        if self.trainer.world_size == 1:
            assert first is not None
            raise FloatingPointError(f"the training loss is {first[1]} at step {first[0]}")
        mine = torch.tensor(first[0] if first else 2**62, device=self.device)
        step = int(self.trainer.strategy.reduce(mine, reduce_op="min"))
        own = f"rank {self.global_rank}'s is " + (f"{first[1]} at step {first[0]}" if first else "finite")
        raise FloatingPointError(f"the training loss is not finite at step {step} on some rank ({own})")

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == "fit":
            self.check_finite_loss()

    def on_train_end(self) -> None:
        self.check_finite_loss()

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        # The 2-norm of all gradients together, before clipping, logged as train/grad_norm: one foreach kernel,
        # reused by the clipping by norm instead of being computed a second time.
        clip = (gradient_clip_algorithm or "norm") == "norm"
        norm = clip_grad_norm(self.backbone.parameters(), gradient_clip_val if clip else None)
        if norm is not None:
            self.log("train/grad_norm", norm, on_step=True, on_epoch=False)
        if not clip:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        # The EMA is updated as part of the optimizer step, so any checkpoint taken after the step holds both.
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.ema is not None:
            decay = self.ema.update(self.backbone, self.global_step)
            self.log("train/ema_decay", decay, on_step=True, on_epoch=False)

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        # The same timesteps and noise for a given validation batch at every evaluation: losses are comparable.
        generator = torch.Generator(device=batch[0].device).manual_seed(
            derive_seed(self.seed, Stream.VALIDATION, batch_idx))
        loss = self._loss(batch, generator)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch[0].shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.backbone.parameters())
        if self.warmup_steps == 0:
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(self.warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        sampler: Sampler,
        num_samples: int,
        seed: int = 0,
        start_index: int = 0,
        class_label: int | str | None = "all",
        guidance_scale: float = 1.0,
        use_ema: bool = True,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Draw samples ``start_index .. start_index + num_samples - 1``; sample i depends only on (seed, i).

        For a class-conditional model ``class_label`` is ``"all"`` (sample i gets class i % K), a class
        index, or ``"none"`` (the null label); ``guidance_scale`` is the classifier-free guidance weight.
        ``callback(i, t, x, x0)`` is the sampler's (:meth:`Sampler.sample`): it sees this batch's start noise and
        its state after each step, and changes nothing drawn.
        """
        indices = range(start_index, start_index + num_samples)
        generators = per_sample_generators(seed, indices, self.device)
        x_T = randn_like(torch.empty(num_samples, *self.data_shape, device=self.device), generators)
        x_T = x_T.contiguous(memory_format=self.memory_format)
        y = class_labels(class_label, indices, self.num_classes, self.device)
        model_fn = self.model_fn(self.sampling_network(use_ema), y, guidance_scale)
        return sampler.sample(model_fn, x_T, self.objective.prediction_type, generators, callback)

    # ----------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is not None and self._trainer.state.fn == "fit":
            self.check_finite_loss()  # never a checkpoint of weights that a non-finite loss has stepped
        checkpoint[CHECKPOINT_KEY] = {"config": self.run_config, "data_shape": list(self.data_shape)}
