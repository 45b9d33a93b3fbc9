"""The EMA of the weights: one update's arithmetic, the warm-up of the decay, and both inside a real run."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config
from torch import nn

from difflab.ema import ExponentialMovingAverage

POWER = 2.0 / 3.0


def small_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net[1].running_mean.normal_()
    net[1].running_var.uniform_(0.5, 2.0)
    net[1].num_batches_tracked.fill_(seed)
    return net


def test_one_update_is_decay_times_shadow_plus_one_minus_decay_times_params_and_copies_buffers():
    net = small_net(0)
    ema = ExponentialMovingAverage(net, max_decay=0.9, power=None)  # a constant decay of 0.9
    before = {k: v.clone().double() for k, v in ema.shadow.named_parameters()}
    trained = small_net(1)  # the network after some optimizer steps: other weights, other buffers
    assert ema.update(trained, step=5) == 0.9
    for name, param in trained.named_parameters():
        expected = 0.9 * before[name] + 0.1 * param.detach().double()
        torch.testing.assert_close(dict(ema.shadow.named_parameters())[name].double(), expected, rtol=0, atol=1e-6)
    for (name, buffer), (_, copied) in zip(trained.named_buffers(), ema.shadow.named_buffers()):
        assert torch.equal(copied, buffer), name
    assert all(not p.requires_grad for p in ema.shadow.parameters())


def test_the_first_update_of_the_warm_up_copies_the_weights():
    ema = ExponentialMovingAverage(small_net(0), max_decay=0.9999, power=POWER)
    trained = small_net(1)
    assert ema.update(trained, step=0) == 0.0
    for (name, param), (_, shadow) in zip(trained.named_parameters(), ema.shadow.named_parameters()):
        assert torch.equal(shadow, param), name


@pytest.mark.parametrize("step, expected", [
    (0, 0.0),                                # 1 - 1^(-2/3)
    (1, 1 - 2 ** (-2 / 3)),                  # 0.3700...
    (9, 1 - 10 ** (-2 / 3)),                 # 0.7845...
    (999, 0.99),                             # 1 - 1000^(-2/3) = 1 - 0.01
    (10**9, 0.9999),                         # capped at max_decay
])
def test_the_decay_warms_up_as_one_minus_one_plus_step_to_the_minus_power(step, expected):
    ema = ExponentialMovingAverage(nn.Linear(1, 1), max_decay=0.9999, power=POWER)
    assert ema.decay_at(step) == pytest.approx(expected, abs=1e-12)


def test_the_decay_without_warm_up_is_max_decay_from_the_first_step():
    ema = ExponentialMovingAverage(nn.Linear(1, 1), max_decay=0.999, power=None)
    assert [ema.decay_at(s) for s in (0, 1, 1000)] == [0.999] * 3


@pytest.mark.parametrize("inv_gamma", [1.0, 7.0])
def test_the_decay_equals_diffusers_ema_model_with_warm_up(inv_gamma):
    """diffusers' EMAModel counts optimization steps from 1 (its first step() calls get_decay(1)); difflab's
    update after optimizer step s (from 0) is its (s + 1)-th."""
    training_utils = pytest.importorskip("diffusers.training_utils")
    net = nn.Linear(2, 2)
    ours = ExponentialMovingAverage(net, max_decay=0.9999, power=POWER, inv_gamma=inv_gamma)
    theirs = training_utils.EMAModel(net.parameters(), decay=0.9999, min_decay=0.0, update_after_step=0,
                                     use_ema_warmup=True, inv_gamma=inv_gamma, power=POWER)
    for step in (0, 1, 2, 9, 99, 12_345, 10**7):
        assert ours.decay_at(step) == pytest.approx(theirs.get_decay(step + 1), abs=1e-12), step


def test_in_a_real_run_the_ema_follows_the_formula_step_by_step(tmp_path, hydra_cleanup):
    """Checkpoints after optimizer steps 1 and 2: the first update copied the raw weights (decay 0), the
    second mixed them with d = 1 - 2^(-2/3)."""
    from difflab.train import train

    run = tmp_path / "run"
    train(compose_config("train", ["dataset=moons", "backbone=mlp", "backbone.hidden_dim=16", "dataset.batch_size=64",
                                   "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
                                   "callbacks.model_checkpoint.every_n_train_steps=1",
                                   "callbacks.sample_grid.every_n_steps=100", "metrics=[]", "ema.decay=0.9999",
                                   f"ema.power={POWER}"], run))
    one = torch.load(run / "checkpoints" / "step_0000001.ckpt", weights_only=True)["state_dict"]
    two = torch.load(run / "checkpoints" / "step_0000002.ckpt", weights_only=True)["state_dict"]
    raw = sorted(k for k in one if k.startswith("backbone."))
    assert raw and all(f"ema.shadow.{k.removeprefix('backbone.')}" in one for k in raw)
    d = 1 - 2 ** (-POWER)
    moved = 0
    for key in raw:
        shadow = f"ema.shadow.{key.removeprefix('backbone.')}"
        assert torch.equal(one[shadow], one[key]), key
        if one[key].is_floating_point():
            expected = d * one[shadow].double() + (1 - d) * two[key].double()
            torch.testing.assert_close(two[shadow].double(), expected, rtol=0, atol=1e-6)
            moved += not torch.equal(two[key], one[key])
    assert moved > 0  # the second step changed the weights, so the mix is visible
