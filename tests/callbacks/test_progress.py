"""The progress bar counts optimizer steps out of max_steps (Lightning's own reads "Epoch 0/-2" here)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from difflab.callbacks import StepProgressBar


class Endless(IterableDataset):
    def __iter__(self):
        while True:
            yield torch.randn(4)


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_the_bar_counts_steps_out_of_max_steps(tmp_path, one_thread):
    bar = StepProgressBar()
    trainer = pl.Trainer(max_steps=6, accumulate_grad_batches=2, callbacks=[bar], logger=False,
                         enable_checkpointing=False, default_root_dir=tmp_path, max_epochs=-1,
                         enable_model_summary=False)
    seen = []
    original = bar.on_train_batch_end

    def record(*args):
        original(*args)
        task = bar.progress.tasks[bar.train_progress_bar_id]
        seen.append((task.description, task.completed, task.total))

    bar.on_train_batch_end = record
    trainer.fit(Tiny(), DataLoader(Endless(), batch_size=2))
    assert seen[-1] == ("Step", 6, 6)
    assert [completed for _, completed, _ in seen] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]  # two micro-batches per step
