"""DiffusionModule in train and eval mode: label dropout (classifier-free guidance training) happens in
training at its rate, and never in evaluation, where the loss is scored with the labels of the batch."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from conftest import compose_config

LABEL_DROPOUT = 0.3
RECORDED: list[tuple[str, Any]] = []  # in call order: ("batch", train?, labels) and ("backbone", train?, labels)


class LabelRecorder(pl.Callback):
    """Records the labels of every batch, and the labels the trainable backbone receives in each forward."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        def seen(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            y = kwargs.get("y", args[2] if len(args) > 2 else None)
            RECORDED.append(("backbone", module.training, None if y is None else y.detach().clone()))

        pl_module.backbone.register_forward_pre_hook(seen, with_kwargs=True)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        RECORDED.append(("batch", True, batch[1].clone()))

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        RECORDED.append(("batch", False, batch[1].clone()))


def pairs(records: list[tuple[str, Any]]) -> list[tuple[bool, bool, torch.Tensor, torch.Tensor]]:
    """(batch in training?, backbone in train mode?, batch labels, labels the backbone received), per batch."""
    out = []
    for (kind, training, labels), (next_kind, mode, received) in zip(records, records[1:]):
        if kind == "batch":
            assert next_kind == "backbone", "a batch without a forward of the backbone"
            out.append((training, mode, labels, received))
    return out


def test_labels_are_dropped_in_training_at_the_rate_and_never_in_evaluation(tmp_path, hydra_cleanup):
    from difflab.train import train

    RECORDED.clear()
    train(compose_config("train", [
        "dataset=moons", "backbone=mlp", "backbone.hidden_dim=16", "dataset.batch_size=256",
        "conditioning.enabled=true", f"conditioning.label_dropout={LABEL_DROPOUT}", "trainer.max_steps=8",
        "trainer.val_check_interval=4",
        "trainer.limit_val_batches=2", "callbacks.sample_grid.every_n_steps=100", "metrics=[]",
        "+callbacks.label_recorder._target_=test_module_modes.LabelRecorder"], tmp_path / "run"))
    batches = pairs(RECORDED)
    train_batches = [b for b in batches if b[0]]
    val_batches = [b for b in batches if not b[0]]
    assert len(train_batches) == 8 and len(val_batches) == 2 * 2  # two validation passes of two batches
    null = 2  # moons: classes 0 and 1, the null label is num_classes

    for _, mode, labels, received in val_batches:
        assert mode is False
        assert torch.equal(received, labels)  # scored with the batch's own labels: no dropout

    dropped = kept = 0
    for _, mode, labels, received in train_batches:
        assert mode is True and received.shape == labels.shape
        is_null = received == null
        assert torch.equal(received[~is_null], labels[~is_null])  # a label is kept as it is, or becomes the null label
        assert 0 < int(is_null.sum()) < len(labels)  # per sample, not per batch
        dropped, kept = dropped + int(is_null.sum()), kept + int((~is_null).sum())
    assert set(torch.cat([b[2] for b in train_batches]).tolist()) == {0, 1}
    # 2048 labels: the standard deviation of the rate is 0.01; the draws are seeded, so this is not left to chance
    assert abs(dropped / (dropped + kept) - LABEL_DROPOUT) < 0.04
