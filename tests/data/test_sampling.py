"""StepBatchSampler contract, ArrayDataModule plumbing, and Lightning fit/resume with the infinite sampler."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from difflab.data import ArrayDataModule, StepBatchSampler
from difflab.utils.seeding import Stream, derive_seed


def take(sampler: StepBatchSampler, k: int) -> list[list[int]]:
    return list(itertools.islice(iter(sampler), k))


# ----------------------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("n_resume", [1, 5, 12, 13, 30])
def test_resume_sees_the_same_batches(n_resume: int) -> None:
    full = take(StepBatchSampler(103, 8, seed=7), 40)  # 12 steps/epoch: resumes cross epoch boundaries
    resumed = take(StepBatchSampler(103, 8, seed=7, start_step=n_resume), 40 - n_resume)
    assert resumed == full[n_resume:]


def test_each_epoch_is_a_permutation_minus_the_remainder() -> None:
    n, bs = 103, 8
    sampler = StepBatchSampler(n, bs, seed=3)
    spe = n // bs
    batches = take(sampler, 5 * spe)
    seen_over_epochs: set[int] = set()
    orders = []
    for e in range(5):
        idx = [i for b in batches[e * spe : (e + 1) * spe] for i in b]
        assert all(len(b) == bs for b in batches[e * spe : (e + 1) * spe])
        assert len(idx) == len(set(idx)) == spe * bs  # each index at most once per epoch
        assert set(idx) <= set(range(n)) and n - len(set(idx)) == n % bs  # only the remainder is dropped
        seen_over_epochs |= set(idx)
        orders.append(idx)
    assert len({tuple(o) for o in orders}) == 5  # a fresh order every epoch
    assert seen_over_epochs == set(range(n))  # the dropped remainder differs between epochs


def test_epoch_order_follows_the_documented_seed() -> None:
    g = torch.Generator().manual_seed(derive_seed(5, Stream.DATA_ORDER, 2))
    expected = torch.randperm(50, generator=g)[:10].tolist()
    sampler = StepBatchSampler(50, 10, seed=5, start_step=2 * 5)  # first step of epoch 2
    assert next(iter(sampler)) == expected


def test_ranks_are_disjoint_and_cover_the_global_chunk() -> None:
    n, bs, world = 50, 4, 3
    per_rank = [take(StepBatchSampler(n, bs, seed=1, rank=r, world_size=world), 10) for r in range(world)]
    global_batches = take(StepBatchSampler(n, bs * world, seed=1), 10)  # one process, global batch size
    for step in range(10):
        parts = [per_rank[r][step] for r in range(world)]
        assert all(len(p) == bs for p in parts)
        assert set(parts[0]).isdisjoint(parts[1]) and set(parts[1]).isdisjoint(parts[2])
        assert set(parts[0]).isdisjoint(parts[2])
        assert sum(parts, []) == global_batches[step]  # rank r holds the r-th block of the chunk


def test_seeds_change_the_order_and_same_seed_repeats_it() -> None:
    assert take(StepBatchSampler(100, 10, seed=0), 5) == take(StepBatchSampler(100, 10, seed=0), 5)
    assert take(StepBatchSampler(100, 10, seed=0), 5) != take(StepBatchSampler(100, 10, seed=1), 5)


def test_without_shuffle_the_order_is_sequential() -> None:
    batches = take(StepBatchSampler(10, 3, shuffle=False), 4)
    assert batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 1, 2]]
    rank1 = take(StepBatchSampler(10, 2, rank=1, world_size=2, shuffle=False), 3)
    assert rank1 == [[2, 3], [6, 7], [2, 3]]


def test_too_small_dataset_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"dataset size 10 .*batch size 4 .*world size 3"):
        StepBatchSampler(10, 4, world_size=3)
    with pytest.raises(ValueError, match="rank"):
        StepBatchSampler(100, 4, rank=2, world_size=2)


def test_sampler_and_its_dataloader_are_unsized() -> None:
    sampler = StepBatchSampler(20, 4)
    with pytest.raises(TypeError):
        len(sampler)
    loader = DataLoader(TensorDataset(torch.arange(20)), batch_sampler=sampler)
    from lightning_fabric.utilities.data import has_len

    assert not has_len(loader)
    assert len(list(itertools.islice(loader, 12))) == 12  # keeps going past one epoch (5 batches)


# --------------------------------------------------------------------------- ArrayDataModule plumbing


class IndexDataModule(ArrayDataModule):
    """x = item index (so batches reveal the order), y = index % 3."""

    name = "index"
    data_shape = (1,)
    num_classes = 3

    def __init__(self, num_train: int = 40, num_val: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_train, self.num_val = num_train, num_val

    def build(self) -> tuple[TensorDataset, TensorDataset]:
        def ds(a: int, b: int) -> TensorDataset:
            idx = torch.arange(a, b)
            return TensorDataset(idx.float()[:, None], idx % 3)

        return ds(0, self.num_train), ds(self.num_train, self.num_train + self.num_val)


def test_batch_size_is_validated() -> None:
    with pytest.raises(ValueError, match=r"dataset\.batch_size=0"):
        IndexDataModule(batch_size=0)
    with pytest.raises(ValueError, match=r"dataset\.name='moons'"):
        IndexDataModule(name="moons")


def test_val_loader_is_sequential_and_complete() -> None:
    dm = IndexDataModule(batch_size=4, val_batch_size=3)
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    assert [len(b[0]) for b in batches] == [3, 3, 3, 1]  # drop_last False
    assert torch.cat([b[0] for b in batches]).view(-1).tolist() == list(range(40, 50))
    assert batches[0][1].dtype == torch.long


def test_train_loader_uses_trainer_rank_world_size_and_progress() -> None:
    dm = IndexDataModule(batch_size=4, seed=9)
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2, global_step=3, accumulate_grad_batches=2)
    x, y = next(iter(dm.train_dataloader()))
    expected = take(StepBatchSampler(40, 4, seed=9, rank=1, world_size=2, start_step=6), 1)[0]
    assert x.view(-1).long().tolist() == expected
    assert torch.equal(y, x.view(-1).long() % 3)


def test_real_samples() -> None:
    dm = IndexDataModule()
    assert dm.real_samples("val").view(-1).tolist() == list(range(40, 50))  # sets itself up
    assert dm.real_samples("train", 5).shape == (5, 1)
    with pytest.raises(ValueError, match="split"):
        dm.real_samples("test")
    with pytest.raises(ValueError, match="n=41"):
        dm.real_samples("train", 41)


# ------------------------------------------------------------------------------------ Lightning


class Recorder(pl.LightningModule):
    """One parameter; records the item indices of every training batch and the val items."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []
        self.val_seen: list[int] = []
        self.epochs: set[int] = set()

    def training_step(self, batch, batch_idx):
        x, _ = batch
        self.seen.append(x.view(-1).long().tolist())
        self.epochs.add(self.current_epoch)
        return ((self.w - x) ** 2).mean()

    def validation_step(self, batch, batch_idx):
        self.val_seen += batch[0].view(-1).long().tolist()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def make_trainer(max_steps: int, tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, num_sanity_val_steps=0,
        default_root_dir=tmp_path, **kwargs,
    )


def test_lightning_fit_runs_on_the_infinite_sampler(tmp_path) -> None:
    dm, model = IndexDataModule(batch_size=16, seed=4), Recorder()
    trainer = make_trainer(5, tmp_path, enable_checkpointing=False, val_check_interval=4, check_val_every_n_epoch=None)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 5
    assert trainer.num_training_batches == float("inf") and model.epochs == {0}  # one never-ending epoch
    assert model.seen == take(StepBatchSampler(40, 16, seed=4), 5)  # 2 steps/epoch: crosses epochs
    assert model.val_seen == list(range(40, 50))  # validation ran once, at step 4, on every val item


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_resume_continues_the_data_order(tmp_path, accumulate: int) -> None:
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    full = Recorder()
    make_trainer(6, tmp_path, callbacks=[ckpt], accumulate_grad_batches=accumulate).fit(
        full, datamodule=IndexDataModule(batch_size=8, seed=2)
    )
    assert len(full.seen) == 6 * accumulate
    (step3,) = [p for p in (tmp_path / "ckpt").iterdir() if "step=3" in p.name]

    resumed = Recorder()
    trainer = make_trainer(6, tmp_path, accumulate_grad_batches=accumulate, enable_checkpointing=False)
    trainer.fit(resumed, datamodule=IndexDataModule(batch_size=8, seed=2), ckpt_path=step3)
    assert trainer.global_step == 6
    assert resumed.seen == full.seen[3 * accumulate :]
