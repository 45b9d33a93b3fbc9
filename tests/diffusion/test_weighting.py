"""Min-SNR-gamma loss weights (Hang et al. 2023) against the paper's formulas, and the identity they are built on.

For a network predicting eps, x0 or v, the paper's weights are min(SNR, gamma)/SNR, min(SNR, gamma) and
min(SNR, gamma)/(SNR + 1). At a fixed x_t, one denoising guess x0_hat implies eps_hat and v_hat, whose squared errors
are related by ||x0 err||^2 = ||eps err||^2 / SNR and ||v err||^2 = ||eps err||^2 (SNR + 1)/SNR. Hence the weighted
losses of the SAME guess agree whichever quantity the network outputs; checked here with the conversions written
out in numpy and through ``DiffusionObjective``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflab.diffusion import DiffusionObjective, GaussianDiffusion, loss_weight, make_schedule

T = 1000
ABAR = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))  # DDPM linear schedule, recomputed independently
SNR = ABAR / (1.0 - ABAR)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("gamma", [1.0, 5.0, 20.0])
def test_min_snr_weights_match_the_paper(gamma):
    snr = np.array([1e-12, 1e-3, 0.5, 1.0, 4.999, 5.0, 5.001, 19.0, 100.0, 1e4])
    s = torch.from_numpy(snr)
    expected = {
        "eps": np.minimum(snr, gamma) / snr,
        "x0": np.minimum(snr, gamma),
        "v": np.minimum(snr, gamma) / (snr + 1.0),
    }
    for prediction_type, want in expected.items():
        got = loss_weight(s, prediction_type, "min_snr", gamma)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
        np.testing.assert_array_equal(loss_weight(s, prediction_type, "uniform", gamma).numpy(), np.ones_like(snr))


def test_eps_weight_is_finite_at_zero_snr():
    """A zero-terminal-SNR schedule reaches SNR = 0, where min(SNR, gamma)/SNR -> 1."""
    w = loss_weight(torch.tensor([0.0, 1e-300]), "eps", "min_snr", 5.0)
    np.testing.assert_array_equal(w.numpy(), [1.0, 1.0])
    assert loss_weight(torch.tensor([0.0]), "x0", "min_snr").item() == 0.0
    assert loss_weight(torch.tensor([0.0]), "v", "min_snr").item() == 0.0


def _consistent_predictions(seed: int = 0):
    """x0, eps, x_t and one guess x0_hat per sample; the eps and v outputs implying that same guess (numpy)."""
    rng = np.random.default_rng(seed)
    t = np.array([0, 3, 40, 150, 300, 600, 999])
    ab = ABAR[t][:, None]
    a, s = np.sqrt(ab), np.sqrt(1 - ab)
    x0, eps = rng.normal(size=(t.size, 6)), rng.normal(size=(t.size, 6))
    x_t = a * x0 + s * eps
    x0_hat = x0 + 0.3 * rng.normal(size=x0.shape)
    eps_hat = (x_t - a * x0_hat) / s
    v_hat = a * eps_hat - s * x0_hat
    return t, x0, eps, {"x0": x0_hat, "eps": eps_hat, "v": v_hat}, {"x0": x0, "eps": eps, "v": a * eps - s * x0}


@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_weighted_errors_of_one_guess_agree_across_parameterisations(gamma):
    t, _, _, pred, target = _consistent_predictions()
    snr = torch.from_numpy(SNR[t])
    weighted = {
        k: loss_weight(snr, k, "min_snr", gamma).numpy() * ((pred[k] - target[k]) ** 2).mean(axis=1) for k in ("eps", "x0", "v")
    }
    np.testing.assert_allclose(weighted["x0"], weighted["eps"], rtol=1e-9)
    np.testing.assert_allclose(weighted["v"], weighted["eps"], rtol=1e-9)
    # ... and they are the x0-space error weighted by min(SNR, gamma), the paper's definition.
    np.testing.assert_allclose(weighted["eps"], np.minimum(SNR[t], gamma) * ((pred["x0"] - target["x0"]) ** 2).mean(axis=1), rtol=1e-9)


def test_objective_applies_the_weight_of_each_samples_timestep():
    diffusion = GaussianDiffusion(make_schedule("linear", num_timesteps=T))
    t, x0, eps, pred, _ = _consistent_predictions(1)
    t_, x0_, eps_ = torch.from_numpy(t), torch.from_numpy(x0), torch.from_numpy(eps)
    losses = {}
    for k in ("eps", "x0", "v"):
        net = lambda x_t, tt, out=torch.from_numpy(pred[k]): out  # noqa: E731
        weighted = DiffusionObjective(prediction_type=k, weighting="min_snr", min_snr_gamma=5.0)(net, diffusion, x0_, t_, eps_)
        uniform = DiffusionObjective(prediction_type=k)(net, diffusion, x0_, t_, eps_)
        paper = {"eps": np.minimum(SNR[t], 5.0) / SNR[t], "x0": np.minimum(SNR[t], 5.0), "v": np.minimum(SNR[t], 5.0) / (SNR[t] + 1)}[k]
        np.testing.assert_allclose(weighted.numpy(), uniform.numpy() * paper, rtol=1e-9)
        losses[k] = weighted.numpy()
    # The same denoising guess costs the same under all three parameterisations once weighted.
    np.testing.assert_allclose(losses["x0"], losses["eps"], rtol=1e-8)
    np.testing.assert_allclose(losses["v"], losses["eps"], rtol=1e-8)


def test_objective_weighting_in_float32_keeps_dtype():
    diffusion = GaussianDiffusion(make_schedule("linear", num_timesteps=T))
    x0 = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    out = DiffusionObjective(weighting="min_snr")(lambda x, t: torch.zeros_like(x), diffusion, x0, torch.tensor([0, 1, 500, 999]), torch.ones_like(x0))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), np.minimum(1.0, 5.0 / SNR[[0, 1, 500, 999]]), rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "match"), [({"weighting": "snr"}, "weighting='snr'"), ({"weighting": "min_snr", "min_snr_gamma": 0.0}, "min_snr_gamma")])
def test_bad_weighting_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionObjective(**kwargs)
    with pytest.raises(ValueError, match=match):
        loss_weight(torch.ones(1), "eps", kwargs["weighting"], kwargs.get("min_snr_gamma", 5.0))
