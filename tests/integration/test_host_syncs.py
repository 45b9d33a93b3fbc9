"""A training step between two logging steps reads nothing of a tensor on the host: on a GPU each such read
(``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``...) waits for the device, so a step that made one would stall
the queue. Counted here on the CPU by wrapping those methods of torch.Tensor during ``difflab-train``."""

from __future__ import annotations

import os
import traceback
from collections import defaultdict

import pytest
import pytorch_lightning as pl
import torch
from conftest import compose_config

from difflab.train import train

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
EVERY = 5  # trainer.log_every_n_steps, and so speed.finite_check_every_n_steps


class StepOfRead(pl.Callback):
    """Which optimizer step (1-based) the trainer is in while the batch runs (None outside of training batches)."""

    step: int | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        StepOfRead.step = trainer.global_step + 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        StepOfRead.step = None


@pytest.mark.usefixtures("one_thread")
def test_no_host_read_of_a_tensor_in_steps_between_logging_steps(tmp_path, hydra_cleanup, monkeypatch):
    reads: dict[int, list[str]] = defaultdict(list)
    for name in READS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, __original=original, __name=name, **kwargs):
            if StepOfRead.step is not None:
                where = traceback.extract_stack(limit=4)[-2]
                # torch.optim's single-tensor and foreach AdamW read their step counter, a tensor torch keeps on the
                # host (unless capturable or fused), which costs no device sync on a GPU
                if f"torch{os.sep}optim{os.sep}" not in where.filename:
                    reads[StepOfRead.step].append(f"{__name} at {where.filename}:{where.lineno}")
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)

    overrides = [
        "dataset.batch_size=16", "backbone.base_channels=16", "backbone.num_res_blocks=1", "trainer.max_steps=20",
        f"trainer.log_every_n_steps={EVERY}", "trainer.val_check_interval=10", "trainer.limit_val_batches=1",
        "callbacks.model_checkpoint.every_n_train_steps=10", "callbacks.sample_grid.every_n_steps=10",
        "metrics=[]", "+callbacks.step_of_read._target_=" + f"{__name__}.StepOfRead",
    ]
    train(compose_config("train", overrides, tmp_path / "run"))
    assert reads, "the wrapper saw no read at all: it is not counting"
    quiet = {step: sorted(set(where)) for step, where in reads.items() if step % EVERY}
    assert not quiet, f"host reads in steps that log nothing: {dict(quiet)}"
