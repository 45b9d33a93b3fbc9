"""``DiffusionObjective`` against independent truth: elementwise losses, Min-SNR-gamma weights, learned variance and
the VLB terms, and the loss by timestep quartile that training logs.

Losses and VLB terms: the independent reference (``_reference_terms``) recomputes everything from the DDPM linear
schedule in numpy: x_t, the predicted x0, the posterior q(x_{t-1} | x_t, x0) (Ho et al. 2020, eqs. 6-7), the
learned-range variance (Nichol & Dhariwal 2021, eq. 15), the Gaussian KL for t >= 1 and the discretized-Gaussian
decoder (scipy CDFs) at t = 0, in bits/dim.

Weights: for a network predicting eps, x0 or v, the paper's (Hang et al. 2023) weights are min(SNR, gamma)/SNR,
min(SNR, gamma) and min(SNR, gamma)/(SNR + 1). At a fixed x_t, one denoising guess x0_hat implies eps_hat and v_hat,
whose squared errors are related by ||x0 err||^2 = ||eps err||^2 / SNR and ||v err||^2 = ||eps err||^2 (SNR + 1)/SNR.
Hence the weighted losses of the SAME guess agree whichever quantity the network outputs; checked here with the
conversions written out in numpy and through ``DiffusionObjective``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from scipy import stats

from difflab.diffusion import (
    DiffusionObjective,
    GaussianDiffusion,
    loss_weight,
    make_schedule,
    split_output,
    timestep_quartile_means,
)

T = 1000
BETAS = np.linspace(1e-4, 0.02, T)  # DDPM linear schedule, independent of the code under test
ABAR = np.cumprod(1.0 - BETAS)
ABAR_PREV = np.concatenate([[1.0], ABAR[:-1]])
BETA_TILDE = BETAS * (1.0 - ABAR_PREV) / (1.0 - ABAR)
LOG_BT_CLIPPED = np.log(np.concatenate([BETA_TILDE[1:2], BETA_TILDE[1:]]))
SNR = ABAR / (1.0 - ABAR)
LN2 = math.log(2.0)
CONF = Path(__file__).resolve().parents[2] / "conf" / "objective"

TS = np.array([0, 0, 1, 2, 10, 200, 999])  # t = 0 twice: decoder terms with different predictions


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(make_schedule("linear", num_timesteps=T))


def _images(seed: int = 0, channels: int = 2):
    """x0 on the 8-bit grid [B, C, 3, 3], noise, and a random network output [B, 2C, 3, 3] (pred, v in [-1, 1])."""
    rng = np.random.default_rng(seed)
    b = TS.size
    x0 = np.round((np.clip(rng.normal(0, 0.5, size=(b, channels, 3, 3)), -1, 1) + 1) * 127.5) / 127.5 - 1
    x0[0, 0, 0, 0], x0[1, 0, 0, 1] = -1.0, 1.0  # edge bins
    noise = rng.normal(size=x0.shape)
    out = np.concatenate([rng.normal(size=x0.shape), rng.uniform(-1, 1, size=x0.shape)], axis=1)
    return x0, noise, out


def _bin_logp(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    lo = np.where(x < -0.999, -np.inf, x - 1 / 255)
    hi = np.where(x > 0.999, np.inf, x + 1 / 255)
    z_lo, z_hi = (lo - mean) / std, (hi - mean) / std
    p = np.where(z_lo > 0, stats.norm.sf(z_lo) - stats.norm.sf(z_hi), stats.norm.cdf(z_hi) - stats.norm.cdf(z_lo))
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    tiny = p < 1e-200  # far tails: scipy underflows, use mpmath at 40 digits (with the same reflection)
    if tiny.any():
        mpmath = pytest.importorskip("mpmath")
        mpmath.mp.dps = 40
        for i in zip(*np.nonzero(tiny)):
            a, b = mpmath.mpf(float(z_lo[i])), mpmath.mpf(float(z_hi[i]))
            q = mpmath.ncdf(-a) - mpmath.ncdf(-b) if a > 0 else mpmath.ncdf(b) - mpmath.ncdf(a)
            logp[i] = float(mpmath.log(q))
    return logp


def _reference_terms(prediction_type, x0, noise, out, t, log_var=None):
    """Per-sample (simple l2 loss, L_t in bits/dim), in numpy. ``log_var`` overrides the learned-range variance."""
    c = x0.shape[1]
    shape = (-1,) + (1,) * (x0.ndim - 1)
    ab, ab_prev, beta = ABAR[t].reshape(shape), ABAR_PREV[t].reshape(shape), BETAS[t].reshape(shape)
    a, s = np.sqrt(ab), np.sqrt(1 - ab)
    x_t = a * x0 + s * noise
    pred = out[:, :c]
    x0_hat = {"eps": (x_t - s * pred) / a, "x0": pred, "v": a * x_t - s * pred}[prediction_type]
    target = {"eps": noise, "x0": x0, "v": a * noise - s * x0}[prediction_type]
    simple = ((pred - target) ** 2).reshape(len(t), -1).mean(1)
    coef_x0 = beta * np.sqrt(ab_prev) / (1 - ab)
    coef_xt = (1 - ab_prev) * np.sqrt(1 - beta) / (1 - ab)
    mu_true, mu_model = coef_x0 * x0 + coef_xt * x_t, coef_x0 * x0_hat + coef_xt * x_t
    if log_var is None:
        frac = (out[:, c:] + 1) / 2
        log_var = frac * np.log(beta) + (1 - frac) * LOG_BT_CLIPPED[t].reshape(shape)
    var_true = BETA_TILDE[t].reshape(shape)
    var = np.exp(log_var) * np.ones_like(x0)
    with np.errstate(divide="ignore"):  # beta~ = 0 at t = 0, where the decoder replaces the KL
        kl = 0.5 * np.log(var / var_true) + (var_true + (mu_true - mu_model) ** 2) / (2 * var) - 0.5
    nll = -_bin_logp(x0, mu_model, np.sqrt(var))
    per_elem = np.where((t == 0).reshape(shape), nll, kl)
    return simple, per_elem.reshape(len(t), -1).mean(1) / LN2


def _network(out: torch.Tensor):
    return lambda x_t, t: out


# ---------------------------------------------------------------------------------------------- simple losses
def _huber(e: np.ndarray, delta: float) -> np.ndarray:
    return np.where(np.abs(e) <= delta, 0.5 * e**2, delta * (np.abs(e) - 0.5 * delta))


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_elementwise_losses_are_per_sample_means(diffusion, loss, prediction_type):
    x0, noise, out = _images(1)
    pred = 2.0 * out[:, :2]  # errors on both sides of the huber threshold
    t = torch.from_numpy(TS)
    delta = 0.7
    objective = DiffusionObjective(prediction_type=prediction_type, loss=loss, huber_delta=delta)
    got = objective(_network(torch.from_numpy(pred)), diffusion, torch.from_numpy(x0), t, torch.from_numpy(noise))
    ab = ABAR[TS].reshape(-1, 1, 1, 1)
    target = {"eps": noise, "x0": x0, "v": np.sqrt(ab) * noise - np.sqrt(1 - ab) * x0}[prediction_type]
    e = pred - target
    assert (np.abs(e) > delta).any() and (np.abs(e) < delta).any()
    elem = {"l2": e**2, "l1": np.abs(e), "huber": _huber(e, delta)}[loss]
    np.testing.assert_allclose(got.numpy(), elem.reshape(TS.size, -1).mean(1), rtol=1e-10)


def test_huber_is_half_l2_for_small_errors_and_linear_for_large(diffusion):
    x0 = torch.zeros(2, 1, 4)
    t = torch.tensor([5, 5])
    small, large = torch.full((1, 1, 4), 0.1), torch.full((1, 1, 4), 10.0)
    noise = torch.cat([small, large])
    zero = _network(torch.zeros(2, 1, 4))
    huber = DiffusionObjective(loss="huber", huber_delta=1.0)(zero, diffusion, x0, t, noise)
    l2 = DiffusionObjective()(zero, diffusion, x0, t, noise)
    assert huber[0].item() == pytest.approx(0.5 * l2[0].item(), rel=1e-6)
    assert huber[1].item() == pytest.approx(10.0 - 0.5, rel=1e-6)


def test_constructor_stays_backwards_compatible(diffusion):
    legacy = DiffusionObjective("x0", "l2")
    settings = (legacy.prediction_type, legacy.loss, legacy.weighting, legacy.learn_variance, legacy.vlb)
    assert settings == ("x0", "l2", "uniform", False, "none")
    assert legacy.output_channels_factor == 1
    x0, noise = torch.randn(3, 2, 2), torch.randn(3, 2, 2)
    out = legacy(_network(torch.zeros(3, 2, 2)), diffusion, x0, torch.tensor([1, 2, 3]), noise)
    np.testing.assert_allclose(out.numpy(), (x0**2).mean(dim=(1, 2)).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": "mse"}, "loss='mse'"),
        ({"loss": "huber", "huber_delta": 0.0}, "huber_delta"),
        ({"vlb": "full"}, "vlb='full'"),
        ({"learn_variance": True}, "needs objective.vlb=hybrid or only"),
        ({"vlb": "hybrid"}, "needs objective.learn_variance=true"),
        ({"vlb": "only", "weighting": "min_snr"}, "no effect"),
        ({"vlb": "only", "learn_variance": True, "loss": "l1"}, "no effect"),
        ({"variance_type": "learned_range"}, "fixed_small or fixed_large"),
        ({"num_bins": 1}, "num_bins"),
    ],
)
def test_inconsistent_configurations_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionObjective(**kwargs)


def _compose_objective(name: str):
    """conf/objective/<name>.yaml composed by Hydra (the options extend eps.yaml through their defaults list)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            return compose(config_name=name)
    finally:
        GlobalHydra.instance().clear()


def test_objective_configs_instantiate():
    for path in sorted(CONF.glob("*.yaml")):
        objective = instantiate(_compose_objective(path.stem))
        assert isinstance(objective, DiffusionObjective), path
    ddpm = instantiate(_compose_objective("improved_ddpm"))
    settings = (ddpm.prediction_type, ddpm.learn_variance, ddpm.vlb, ddpm.vlb_weight, ddpm.output_channels_factor)
    assert settings == ("eps", True, "hybrid", 0.001, 2)
    # The options differ from eps.yaml only where they say so.
    eps = dict(_compose_objective("eps"))
    for name, changed in {"x0": {"prediction_type": "x0"}, "v": {"prediction_type": "v"},
                          "improved_ddpm": {"learn_variance": True, "vlb": "hybrid"}}.items():
        assert dict(_compose_objective(name)) == {**eps, **changed}, name


# ---------------------------------------------------------------------------------------------- learned variance / VLB
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_hybrid_terms_match_the_reference(diffusion, prediction_type):
    x0, noise, out = _images(2)
    objective = DiffusionObjective(prediction_type=prediction_type, learn_variance=True, vlb="hybrid", vlb_weight=0.001)
    assert objective.output_channels_factor == 2
    terms = objective.terms(
        _network(torch.from_numpy(out)), diffusion, torch.from_numpy(x0), torch.from_numpy(TS), torch.from_numpy(noise)
    )
    simple, vlb = _reference_terms(prediction_type, x0, noise, out, TS)
    np.testing.assert_allclose(terms["simple"].numpy(), simple, rtol=1e-10)
    np.testing.assert_allclose(terms["vlb"].numpy(), T * vlb, rtol=1e-9)  # the term is T * L_t
    np.testing.assert_allclose(terms["loss"].numpy(), simple + 0.001 * T * vlb, rtol=1e-9)
    assert (terms["vlb"] >= 0).all()


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_vlb_only_with_fixed_variance(diffusion, variance_type):
    x0, noise, out = _images(3)
    pred = out[:, :2]
    objective = DiffusionObjective(vlb="only", variance_type=variance_type)
    loss = objective(
        _network(torch.from_numpy(pred)), diffusion, torch.from_numpy(x0), torch.from_numpy(TS), torch.from_numpy(noise)
    )
    # fixed_large uses beta_t, except at t = 0 where it uses beta~ of index 1 (improved-diffusion's convention).
    table = LOG_BT_CLIPPED if variance_type == "fixed_small" else np.log(np.concatenate([BETA_TILDE[1:2], BETAS[1:]]))
    _, vlb = _reference_terms("eps", x0, noise, pred, TS, log_var=table[TS].reshape(-1, 1, 1, 1))
    np.testing.assert_allclose(loss.numpy(), T * vlb, rtol=1e-9)


def test_flat_data_with_learned_variance(diffusion):
    rng = np.random.default_rng(4)
    x0 = np.round(rng.uniform(-1, 1, size=(TS.size, 3)) * 127.5) / 127.5
    noise, out = (
        rng.normal(size=x0.shape),
        np.concatenate([rng.normal(size=x0.shape), rng.uniform(-1, 1, size=x0.shape)], axis=1),
    )
    objective = DiffusionObjective(learn_variance=True, vlb="only")
    loss = objective(
        _network(torch.from_numpy(out)), diffusion, torch.from_numpy(x0), torch.from_numpy(TS), torch.from_numpy(noise)
    )
    np.testing.assert_allclose(loss.numpy(), T * _reference_terms("eps", x0, noise, out, TS)[1], rtol=1e-9)


def test_learned_variance_endpoints_through_the_objective(diffusion):
    """v = +1 gives Sigma = beta_t, v = -1 gives the clipped beta~_t: compare with the reference at those variances."""
    x0, noise, out = _images(5)
    objective = DiffusionObjective(learn_variance=True, vlb="only")
    for v, table in ((1.0, np.log(BETAS)), (-1.0, LOG_BT_CLIPPED)):
        o = out.copy()
        o[:, 2:] = v
        args = (torch.from_numpy(x0), torch.from_numpy(TS), torch.from_numpy(noise))
        loss = objective(_network(torch.from_numpy(o)), diffusion, *args)
        _, vlb = _reference_terms("eps", x0, noise, o, TS, log_var=table[TS].reshape(-1, 1, 1, 1))
        np.testing.assert_allclose(loss.numpy(), T * vlb, rtol=1e-9)


def _numeric_grad(f, x: np.ndarray, index: tuple, h: float = 1e-5) -> float:
    """Central difference. Compared with rel=1e-4: the scipy reference loses ~1e-6 relative accuracy in derivatives
    where a bin's probability is within 1e-10 of 1 (log p ~ p - 1 from a CDF near 1)."""
    xp, xm = x.copy(), x.copy()
    xp[index] += h
    xm[index] -= h
    return (f(xp) - f(xm)) / (2 * h)


def test_hybrid_vlb_trains_only_the_variance(diffusion):
    """Gradients w.r.t. the prediction channels are exactly those of L_simple; the variance channels get
    vlb_weight * T * dL_vlb/dv (checked against finite differences of the numpy reference)."""
    x0, noise, out_np = _images(6)
    out = torch.from_numpy(out_np).requires_grad_()
    objective = DiffusionObjective(learn_variance=True, vlb="hybrid")
    objective(
        _network(out), diffusion, torch.from_numpy(x0), torch.from_numpy(TS), torch.from_numpy(noise)
    ).sum().backward()
    per_sample = x0[0].size
    np.testing.assert_allclose(
        out.grad[:, :2].numpy(), 2 * (out_np[:, :2] - noise) / per_sample, rtol=1e-10, atol=1e-14
    )
    grad_v = out.grad[:, 2:].numpy()
    assert (np.abs(grad_v).reshape(TS.size, -1).max(1) > 0).all()
    for index in [(0, 2, 0, 0), (2, 3, 1, 2), (4, 2, 2, 1), (6, 3, 0, 1)]:
        fd = _numeric_grad(lambda o: 0.001 * T * _reference_terms("eps", x0, noise, o, TS)[1][index[0]], out_np, index)
        assert grad_v[index[0], index[1] - 2, index[2], index[3]] == pytest.approx(fd, rel=1e-4, abs=1e-9)


def test_vlb_only_trains_the_mean_too(diffusion):
    x0, noise, out_np = _images(7)
    out = torch.from_numpy(out_np).requires_grad_()
    DiffusionObjective(learn_variance=True, vlb="only")(
        _network(out), diffusion, torch.from_numpy(x0), torch.from_numpy(TS), torch.from_numpy(noise)
    ).sum().backward()
    for index in [(0, 0, 0, 0), (2, 1, 1, 2), (3, 3, 2, 1), (5, 0, 0, 1), (6, 2, 1, 1)]:
        fd = _numeric_grad(lambda o: T * _reference_terms("eps", x0, noise, o, TS)[1][index[0]], out_np, index)
        assert out.grad[index].item() == pytest.approx(fd, rel=1e-4, abs=1e-9)


def test_vlb_is_nonnegative_for_random_networks(diffusion):
    g = torch.Generator().manual_seed(8)
    x0 = (torch.randint(0, 256, (64, 3, 4, 4), generator=g) / 127.5 - 1.0).float()
    t = torch.randint(0, T, (64,), generator=g)
    t[:8] = 0
    out = torch.cat([3 * torch.randn(64, 3, 4, 4, generator=g), 2 * torch.rand(64, 3, 4, 4, generator=g) - 1], dim=1)
    terms = DiffusionObjective(learn_variance=True, vlb="hybrid").terms(
        _network(out), diffusion, x0, t, torch.randn(x0.shape, generator=g)
    )
    assert terms["vlb"].dtype == torch.float32
    assert torch.isfinite(terms["loss"]).all() and (terms["vlb"] >= 0).all()


def test_output_shape_errors_and_split(diffusion):
    x0, noise, t = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), torch.tensor([1, 2])
    objective = DiffusionObjective(learn_variance=True, vlb="hybrid")
    with pytest.raises(ValueError, match="output_channels_factor"):
        objective(_network(torch.zeros(2, 3, 4, 4)), diffusion, x0, t, noise)
    with pytest.raises(ValueError, match="data's shape"):
        DiffusionObjective()(_network(torch.zeros(2, 6, 4, 4)), diffusion, x0, t, noise)
    full = torch.arange(2 * 6 * 16, dtype=torch.float32).reshape(2, 6, 4, 4)
    pred, values = split_output(full, x0, objective.learn_variance)
    assert torch.equal(pred, full[:, :3]) and torch.equal(values, full[:, 3:])
    plain = DiffusionObjective()
    pred, values = split_output(x0, x0, plain.learn_variance)
    assert pred is x0 and values is None
    expected = {"prediction_type": "eps", "learn_variance": True, "variance_type": "fixed_small", "num_bins": 256}
    assert objective.nll_kwargs() == expected


# ---------------------------------------------------------------------------------------------- terms and quartiles
def test_terms_add_up_to_the_loss(diffusion):
    """loss = simple (vlb=none), simple + vlb_weight * vlb (hybrid), vlb (only: simple is reported, not trained)."""
    x0, noise, out = _images(9)
    args = (torch.from_numpy(x0), torch.from_numpy(TS), torch.from_numpy(noise))
    simple_ref, vlb_ref = _reference_terms("eps", x0, noise, out, TS)

    plain = DiffusionObjective().terms(_network(torch.from_numpy(out[:, :2])), diffusion, *args)
    assert set(plain) == {"loss", "simple"}
    np.testing.assert_array_equal(plain["loss"].numpy(), plain["simple"].numpy())

    hybrid = DiffusionObjective(learn_variance=True, vlb="hybrid", vlb_weight=0.003).terms(
        _network(torch.from_numpy(out)), diffusion, *args
    )
    assert set(hybrid) == {"loss", "simple", "vlb"}
    np.testing.assert_allclose(hybrid["loss"].numpy(), (hybrid["simple"] + 0.003 * hybrid["vlb"]).numpy(), rtol=1e-12)
    np.testing.assert_allclose(hybrid["loss"].numpy(), simple_ref + 0.003 * T * vlb_ref, rtol=1e-9)

    out_t = torch.from_numpy(out).requires_grad_()
    only = DiffusionObjective(learn_variance=True, vlb="only").terms(_network(out_t), diffusion, *args)
    np.testing.assert_array_equal(only["loss"].detach().numpy(), only["vlb"].detach().numpy())
    np.testing.assert_allclose(only["vlb"].detach().numpy(), T * vlb_ref, rtol=1e-9)
    np.testing.assert_allclose(only["simple"].numpy(), simple_ref, rtol=1e-10)
    assert not only["simple"].requires_grad


def test_timestep_quartile_means_by_hand():
    """Quartile q holds t in [q T/4, (q + 1) T/4); empty quartiles are left out (checked with T = 1000 and T = 10)."""
    rng = np.random.default_rng(10)
    for num_timesteps, t in (
        (1000, [0, 249, 250, 499, 500, 749, 750, 999, 10, 600, 600]),
        (10, [0, 2, 3, 4, 5, 7, 7]),
        (10, [2, 3, 7]),
    ):
        t = np.array(t)
        values = rng.uniform(0, 2, size=t.size)
        got = timestep_quartile_means(torch.from_numpy(values), torch.from_numpy(t), num_timesteps)
        expected = {}
        for q in range(4):
            inside = (t >= q * num_timesteps / 4) & (t < (q + 1) * num_timesteps / 4)
            if inside.any():
                expected[q] = values[inside].mean()
        assert sorted(got) == sorted(expected), (num_timesteps, t)
        for q, value in expected.items():
            assert got[q].item() == pytest.approx(value, rel=1e-12)
    # T = 10: t = 2 lies in [0, 2.5), t = 7 in [5, 7.5), so the last call has no sample in q3.
    assert sorted(timestep_quartile_means(torch.ones(3), torch.tensor([2, 3, 7]), 10)) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------- Min-SNR-gamma weights
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
        k: loss_weight(snr, k, "min_snr", gamma).numpy() * ((pred[k] - target[k]) ** 2).mean(axis=1)
        for k in ("eps", "x0", "v")
    }
    np.testing.assert_allclose(weighted["x0"], weighted["eps"], rtol=1e-9)
    np.testing.assert_allclose(weighted["v"], weighted["eps"], rtol=1e-9)
    # ... and they are the x0-space error weighted by min(SNR, gamma), the paper's definition.
    np.testing.assert_allclose(
        weighted["eps"], np.minimum(SNR[t], gamma) * ((pred["x0"] - target["x0"]) ** 2).mean(axis=1), rtol=1e-9
    )


def test_objective_applies_the_weight_of_each_samples_timestep():
    diffusion = GaussianDiffusion(make_schedule("linear", num_timesteps=T))
    t, x0, eps, pred, _ = _consistent_predictions(1)
    t_, x0_, eps_ = torch.from_numpy(t), torch.from_numpy(x0), torch.from_numpy(eps)
    losses = {}
    for k in ("eps", "x0", "v"):
        net = lambda x_t, tt, out=torch.from_numpy(pred[k]): out  # noqa: E731
        weighted = DiffusionObjective(prediction_type=k, weighting="min_snr", min_snr_gamma=5.0)(
            net, diffusion, x0_, t_, eps_
        )
        uniform = DiffusionObjective(prediction_type=k)(net, diffusion, x0_, t_, eps_)
        paper = {
            "eps": np.minimum(SNR[t], 5.0) / SNR[t],
            "x0": np.minimum(SNR[t], 5.0),
            "v": np.minimum(SNR[t], 5.0) / (SNR[t] + 1),
        }[k]
        np.testing.assert_allclose(weighted.numpy(), uniform.numpy() * paper, rtol=1e-9)
        losses[k] = weighted.numpy()
    # The same denoising guess costs the same under all three parameterisations once weighted.
    np.testing.assert_allclose(losses["x0"], losses["eps"], rtol=1e-8)
    np.testing.assert_allclose(losses["v"], losses["eps"], rtol=1e-8)


def test_objective_weighting_in_float32_keeps_dtype():
    diffusion = GaussianDiffusion(make_schedule("linear", num_timesteps=T))
    x0 = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    out = DiffusionObjective(weighting="min_snr")(
        lambda x, t: torch.zeros_like(x), diffusion, x0, torch.tensor([0, 1, 500, 999]), torch.ones_like(x0)
    )
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), np.minimum(1.0, 5.0 / SNR[[0, 1, 500, 999]]), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"weighting": "snr"}, "weighting='snr'"), ({"weighting": "min_snr", "min_snr_gamma": 0.0}, "min_snr_gamma")],
)
def test_bad_weighting_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionObjective(**kwargs)
    with pytest.raises(ValueError, match=match):
        loss_weight(torch.ones(1), "eps", kwargs["weighting"], kwargs.get("min_snr_gamma", 5.0))
