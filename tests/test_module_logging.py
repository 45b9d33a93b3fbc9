"""The training step logs the loss's terms and the loss by timestep quartile (improved-diffusion's loss_q0..q3)."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import compose_config

from difflab.backbones import MLP
from difflab.diffusion import DiffusionObjective, make_schedule
from difflab.module import DiffusionModule
from difflab.train import train

T = 1000
QUARTILES = [f"train/loss_q{q}" for q in range(4)]


def tiny_module(objective: DiffusionObjective) -> DiffusionModule:
    backbone = MLP(
        data_dim=2, hidden_dim=16, num_layers=1, time_embed_dim=8, out_channels=2 * objective.output_channels_factor
    )
    return DiffusionModule(
        backbone, make_schedule("linear", num_timesteps=T), objective, torch.optim.AdamW, data_shape=[2], ema_decay=None
    )


def logged_terms(module: DiffusionModule, terms: dict[str, torch.Tensor], monkeypatch) -> dict[str, float]:
    logged: dict[str, float] = {}

    def log(name, value, **kwargs):
        assert (
            kwargs.get("on_step") is True and kwargs.get("on_epoch") is False and not kwargs.get("sync_dist", False)
        ), (name, kwargs)
        logged[name] = float(value)

    monkeypatch.setattr(module, "log", log)
    module._log_train_terms(terms, terms["loss"].shape[0])
    return logged


@pytest.mark.usefixtures("one_thread")
def test_quartile_losses_and_terms_by_hand(monkeypatch):
    """Per-sample losses with known t: each quartile's logged value is the mean over its samples (t in
    [q T/4, (q + 1) T/4)), an empty quartile is not logged, and simple + vlb_weight * vlb is the loss."""
    module = tiny_module(DiffusionObjective(learn_variance=True, vlb="hybrid", vlb_weight=0.001))
    x0 = torch.rand(9, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    terms: dict[str, torch.Tensor] = {}
    loss = module._loss([x0], torch.Generator().manual_seed(1), terms=terms)
    assert set(terms) == {"loss", "simple", "vlb", "t"}
    torch.testing.assert_close(loss, terms["loss"].mean())
    torch.testing.assert_close(terms["loss"], terms["simple"] + 0.001 * terms["vlb"], rtol=1e-6, atol=0)

    # The logged quartiles for chosen timesteps (none in [500, 750)) and per-sample losses.
    t = torch.tensor([0, 249, 250, 400, 499, 750, 999, 800, 3])
    per_sample = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    logged = logged_terms(
        module, {"loss": per_sample, "simple": per_sample / 2, "vlb": per_sample * 500, "t": t}, monkeypatch
    )
    assert logged == pytest.approx(
        {
            "train/loss_simple": per_sample.mean().item() / 2,
            "train/loss_vlb": per_sample.mean().item() * 500,
            "train/loss_q0": (1.0 + 2.0 + 9.0) / 3,
            "train/loss_q1": (3.0 + 4.0 + 5.0) / 3,
            "train/loss_q3": (6.0 + 7.0 + 8.0) / 3,
        },
        rel=1e-6,
    )

    # vlb=none: no VLB term is logged.
    plain = tiny_module(DiffusionObjective())
    terms = {}
    plain._loss([x0], torch.Generator().manual_seed(1), terms=terms)
    logged = logged_terms(plain, terms, monkeypatch)
    assert "train/loss_vlb" not in logged and logged["train/loss_simple"] == pytest.approx(
        terms["loss"].mean().item(), rel=1e-6
    )
    quartile = (terms["t"] * 4 // T).numpy()
    for q in range(4):
        inside = quartile == q
        assert (f"train/loss_q{q}" in logged) == inside.any()
        if inside.any():
            assert logged[f"train/loss_q{q}"] == pytest.approx(
                terms["loss"][torch.from_numpy(inside)].mean().item(), rel=1e-6
            )


def test_a_short_training_logs_the_terms(tmp_path, hydra_cleanup):
    cfg = compose_config("train", [
        "experiment=moons", "objective=improved_ddpm", "dataset.batch_size=64", "trainer.max_steps=6",
        "trainer.log_every_n_steps=1", "trainer.val_check_interval=3", "trainer.limit_val_batches=1",
        "callbacks.model_checkpoint.every_n_train_steps=100", "callbacks.sample_grid.every_n_steps=100",
        "callbacks.sample_grid.num_samples=4", "sampler.steps=2", "callbacks.rich_progress_bar=null", "metrics=[]",
    ], tmp_path)
    train(cfg)
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(rows) == 6
    for row in rows:
        loss, simple, vlb = (float(row[k]) for k in ("train/loss", "train/loss_simple", "train/loss_vlb"))
        assert loss == pytest.approx(simple + 0.001 * vlb, rel=1e-5)
        quartiles = [float(row[k]) for k in QUARTILES if row.get(k)]
        assert len(quartiles) == 4  # 64 samples: every quartile has some
        # the batch mean is a weighted mean of the quartile means
        assert min(quartiles) * (1 - 1e-6) <= loss <= max(quartiles) * (1 + 1e-6)
