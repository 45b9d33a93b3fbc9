"""The variational bound in bits/dim (``difflab.diffusion.nll``) against independent truth.

* ``normal_kl``: the textbook closed form and a Monte Carlo estimate.
* ``discretized_gaussian_log_likelihood``: bin probabilities from scipy's normal CDF (and mpmath for far tails), the
  open-ended edge bins, and all bins summing to one.
* The bound itself, on data whose exact likelihood is known. Data: per coordinate, x0 is N(M_d, S_d^2) rounded to
  the 8-bit grid k/127.5 - 1 and clipped to [-1, 1], i.e. exactly the "discretized Gaussian" with open-ended edge
  bins, so -log2 P(x0) is computable exactly with scipy. The model is the exact reverse process of the CONTINUOUS
  Gaussian N(M, S^2): eps-prediction E[eps | x_t] (linear in x_t) and, through the learned-range channels, the
  exact reverse variance Var(x_{t-1} | x_t) = D_{t-1} beta_t / D_t with D_t = abar_t S^2 + 1 - abar_t (which lies
  in [beta~_t, beta_t] because S < 1). Then:

  - the model's marginal p(x0) is EXACTLY the discretized Gaussian (binning commutes with marginalising x_1 out of
    the continuous posterior, and the decoder's bins match the data's), up to the prior mismatch
    KL(q(x_T) || N(0, I)) ~ 3e-6 bits/dim here;
  - the bound's expectation exceeds E[-log2 p(x0)] by the posterior gap E KL(q(x_{1:T} | x0) || p(x_{1:T} | x0)).
    Both processes are Markov given x_1, so the gap is the KL at x_1 alone: a point mass x0 pushed through the
    forward step (variance beta_1 = 1e-4) versus the same for x0 spread over its bin (width 2/255, within-bin
    variance 5.1e-6). That is ~0.25 (5.1e-6 / 1e-4)^2 nats = 9e-4 bits/dim (edge bins, whose mass is < 1e-3 here,
    add less than 1e-4);
  - so E[bound] = E[-log2 P(x0)] + ~0.001 bits/dim. The estimate has Monte Carlo noise from the x_t draws
    (standard error ~0.011 bits/dim with 2048 x 8 coordinates), which sets the tolerance.

  With a FIXED variance (fixed_small / fixed_large) the same optimal mean gives a looser bound: for t >= 1 each
  term grows in expectation by KL(N(0, Var_true) || N(0, Sigma_fixed)), computed here in closed form.

Numbers at the time of writing (seeds fixed): exact -log2 P = 6.5556 bits/dim, bound with the exact variance
6.5541 (difference -0.0015 +- 0.0106), fixed_large 6.6805, fixed_small 7.2817.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from difflab.diffusion import (
    GaussianDiffusion,
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    make_schedule,
    normal_kl,
    prior_bpd,
    vlb_terms,
)
from difflab.diffusion.nll import _kl_sum_weights

T = 1000
BETAS = np.linspace(1e-4, 0.02, T)  # the DDPM linear schedule, recomputed independently of the code under test
ABAR = np.cumprod(1.0 - BETAS)
ABAR_PREV = np.concatenate([[1.0], ABAR[:-1]])
BETA_TILDE = BETAS * (1.0 - ABAR_PREV) / (1.0 - ABAR)
LOG_BETA_TILDE_CLIPPED = np.log(np.concatenate([BETA_TILDE[1:2], BETA_TILDE[1:]]))
LN2 = math.log(2.0)

# Gaussian data per coordinate: means and stds chosen so that edge-bin masses are small (< 1e-3) but not all zero.
M = np.array([0.0, 0.3, -0.5, 0.2, -0.1, 0.1, 0.45, -0.2])
S = np.array([0.3, 0.15, 0.12, 0.18, 0.22, 0.2, 0.1, 0.25])
Z = 4.5  # standard errors allowed in a statistical comparison (seeds are fixed, results reproducible)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(make_schedule("linear", num_timesteps=T))


# ---------------------------------------------------------------------------------------------- normal_kl
def test_normal_kl_closed_form():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=50), rng.normal(size=50)
    s1, s2 = np.exp(rng.normal(size=50)), np.exp(rng.normal(size=50))
    expected = np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    got = normal_kl(*(torch.from_numpy(a) for a in (m1, 2 * np.log(s1), m2, 2 * np.log(s2))))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-14)
    same = normal_kl(torch.tensor(0.3), torch.tensor(-1.0), torch.tensor(0.3), torch.tensor(-1.0))
    assert abs(same.item()) < 1e-7


def test_normal_kl_monte_carlo():
    m1, s1, m2, s2 = 0.4, 0.7, -0.2, 1.3
    x = np.random.default_rng(1).normal(m1, s1, size=400_000)
    log_ratio = stats.norm.logpdf(x, m1, s1) - stats.norm.logpdf(x, m2, s2)
    got = normal_kl(
        torch.tensor(m1), torch.tensor(2 * math.log(s1)), torch.tensor(m2), torch.tensor(2 * math.log(s2))
    ).item()
    assert abs(got - log_ratio.mean()) < Z * log_ratio.std() / math.sqrt(x.size)


# ---------------------------------------------------------------------------------------------- decoder
GRID = np.arange(256) / 127.5 - 1.0


def _bin_probabilities_scipy(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """P(bin of x) for N(mean, std^2) with bins x +- 1/255, the first open to -inf and the last to +inf."""
    lo = np.where(x < -0.999, -np.inf, x - 1 / 255)
    hi = np.where(x > 0.999, np.inf, x + 1 / 255)
    upper_side = lo > mean  # above the mean, difference the survival functions so nothing cancels
    return np.where(
        upper_side,
        stats.norm.sf(lo, mean, std) - stats.norm.sf(hi, mean, std),
        stats.norm.cdf(hi, mean, std) - stats.norm.cdf(lo, mean, std),
    )


@pytest.mark.parametrize(
    ("mean", "std"), [(0.0, 0.5), (0.97, 0.02), (-1.0, 0.004), (1.0, 0.01), (0.3, 3.0), (-0.62, 0.1)]
)
def test_discretized_likelihood_matches_scipy_on_every_bin(mean, std):
    x = torch.from_numpy(GRID)
    got = discretized_gaussian_log_likelihood(
        x, torch.tensor(mean, dtype=torch.float64), torch.tensor(math.log(std), dtype=torch.float64)
    )
    p = _bin_probabilities_scipy(GRID, mean, std)
    ok = p > 1e-250  # scipy's direct CDF difference is meaningless below that (see the far-tail test)
    np.testing.assert_allclose(got.numpy()[ok], np.log(p[ok]), rtol=1e-9, atol=1e-9)
    # The edges: the first bin is P(X <= -1 + 1/255), the last P(X >= 1 - 1/255).
    assert got[0].item() == pytest.approx(stats.norm.logcdf(-1 + 1 / 255, mean, std), rel=1e-10, abs=1e-12)
    assert got[-1].item() == pytest.approx(stats.norm.logsf(1 - 1 / 255, mean, std), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize(
    ("mean", "std"), [(0.0, 0.5), (0.9, 0.003), (-1.3, 0.2), (2.5, 0.05), (0.0, 40.0), (0.1, 1e-5)]
)
def test_bin_probabilities_sum_to_one(mean, std):
    x = torch.from_numpy(GRID)
    lp = discretized_gaussian_log_likelihood(
        x, torch.tensor(mean, dtype=torch.float64), torch.tensor(math.log(std), dtype=torch.float64)
    )
    assert torch.isfinite(lp).all()
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-12)


def test_other_bin_counts_sum_to_one():
    """Data with 17 levels (sklearn digits: x/16*2 - 1): bins of half-width 1/16."""
    grid = torch.arange(17, dtype=torch.float64) / 8.0 - 1.0
    lp = discretized_gaussian_log_likelihood(
        grid, torch.tensor(0.2, dtype=torch.float64), torch.tensor(math.log(0.3), dtype=torch.float64), num_bins=17
    )
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    p5 = stats.norm.cdf(grid[5].item() + 1 / 16, 0.2, 0.3) - stats.norm.cdf(grid[5].item() - 1 / 16, 0.2, 0.3)
    assert lp[5].item() == pytest.approx(math.log(p5), rel=1e-10)


def test_far_tails_are_finite_and_accurate():
    """Where CDF differences underflow or cancel in double precision, compare with mpmath at 50 digits."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    cases = [(0.5, -0.9, 0.01), (-0.5, 0.9, 0.01), (0.0, 0.99, 0.001), (-1.0, 0.95, 0.002), (0.2, 0.2 + 1e-9, 1e3)]
    for x, mean, std in cases:
        lo, hi = mpmath.mpf(x) - mpmath.mpf(1) / 255, mpmath.mpf(x) + mpmath.mpf(1) / 255
        z = lambda v: (v - mean) / mpmath.mpf(std)  # noqa: E731
        if x < -0.999:
            p = mpmath.ncdf(z(hi))
        elif x > 0.999:
            p = mpmath.ncdf(-z(lo))
        elif lo > mean:  # reflect so the difference is of two small numbers, which mpmath keeps exactly
            p = mpmath.ncdf(-z(lo)) - mpmath.ncdf(-z(hi))
        else:
            p = mpmath.ncdf(z(hi)) - mpmath.ncdf(z(lo))
        got = discretized_gaussian_log_likelihood(
            torch.tensor(x, dtype=torch.float64),
            torch.tensor(mean, dtype=torch.float64),
            torch.tensor(math.log(std), dtype=torch.float64),
        ).item()
        assert math.isfinite(got)
        assert got == pytest.approx(float(mpmath.log(p)), rel=1e-9), (x, mean, std)


def test_gradients_are_finite_everywhere():
    x = torch.from_numpy(GRID).repeat(3)
    means = (
        torch.cat([torch.full((256,), 0.0), torch.full((256,), 5.0), torch.full((256,), -3.0)])
        .double()
        .requires_grad_()
    )
    log_scales = (
        torch.cat([torch.full((256,), -2.0), torch.full((256,), -6.0), torch.full((256,), 4.0)])
        .double()
        .requires_grad_()
    )
    discretized_gaussian_log_likelihood(x, means, log_scales).sum().backward()
    assert torch.isfinite(means.grad).all() and torch.isfinite(log_scales.grad).all()


def test_float32_agrees_with_float64():
    x = torch.from_numpy(GRID)
    for mean, std in [(0.1, 0.01), (0.1, 0.3), (-0.99, 0.005)]:
        lp64 = discretized_gaussian_log_likelihood(
            x, torch.tensor(mean, dtype=torch.float64), torch.tensor(math.log(std), dtype=torch.float64)
        )
        lp32 = discretized_gaussian_log_likelihood(x.float(), torch.tensor(mean), torch.tensor(math.log(std)))
        keep = lp64 > -30  # where the probability matters
        np.testing.assert_allclose(lp32.double()[keep].numpy(), lp64[keep].numpy(), rtol=1e-3, atol=2e-3)


# ---------------------------------------------------------------------------------------------- prior
def test_prior_bpd(diffusion):
    x0 = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, size=(4, 3, 2)))
    m, v = np.sqrt(ABAR[-1]) * x0.numpy(), 1 - ABAR[-1]
    expected = (0.5 * (-1 - np.log(v) + v + m**2)).reshape(4, -1).mean(1) / LN2
    np.testing.assert_allclose(prior_bpd(diffusion, x0).numpy(), expected, rtol=1e-10)


# ---------------------------------------------------------------------------------------------- the bound
def _reverse_variance(t: np.ndarray) -> np.ndarray:
    """Var(x_{t-1} | x_t) for the continuous Gaussian data, [len(t), D] (for t = 0, x_{-1} is x0: D_prev = S^2)."""
    d_prev = ABAR_PREV[t, None] * S**2 + 1 - ABAR_PREV[t, None]
    d_t = ABAR[t, None] * S**2 + 1 - ABAR[t, None]
    return d_prev * BETAS[t, None] / d_t


def _optimal_model(learn_variance: bool):
    """model_fn(x_t, t) -> [E[eps | x_t], v] with v the learned-range value giving the exact reverse variance."""
    true_log_var = np.log(_reverse_variance(np.arange(T)))
    frac = (true_log_var - LOG_BETA_TILDE_CLIPPED[:, None]) / (np.log(BETAS) - LOG_BETA_TILDE_CLIPPED)[:, None]
    assert frac.min() >= 0 and frac.max() <= 1, "the exact variance must lie in the learned range"
    v_table, ab_table, mu, s = (
        torch.from_numpy(2 * frac - 1),
        torch.from_numpy(ABAR),
        torch.from_numpy(M),
        torch.from_numpy(S),
    )

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = ab_table[t].view(-1, 1)
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * s**2 + 1 - ab)
        return torch.cat([eps, v_table[t]], dim=1) if learn_variance else eps

    return model_fn


def _discretized_gaussian_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x0 [n, D] on the 8-bit grid, and its exact log-probability per coordinate from scipy."""
    z = np.random.default_rng(seed).normal(M, S, size=(n, M.size))
    k = np.clip(np.round((z + 1) * 127.5), 0, 255)
    lo = np.where(k == 0, -np.inf, (k - 0.5) / 127.5 - 1)
    hi = np.where(k == 255, np.inf, (k + 0.5) / 127.5 - 1)
    return k / 127.5 - 1, np.log(stats.norm.cdf(hi, M, S) - stats.norm.cdf(lo, M, S))


def test_bound_with_the_exact_reverse_process_equals_the_exact_nll(diffusion):
    n = 2048
    x0, log_p = _discretized_gaussian_data(n, seed=0)
    exact = -log_p.mean(axis=1) / LN2  # per sample, bits/dim
    out = vlb_terms(
        _optimal_model(True),
        diffusion,
        torch.from_numpy(x0),
        "eps",
        learn_variance=True,
        generator=torch.Generator().manual_seed(1),
    )
    bound = out["total_bpd"].numpy()
    gap = bound - exact
    stderr = gap.std() / math.sqrt(n)
    expected_gap = 0.001  # the posterior gap at x_1 (module docstring); the prior mismatch is ~3e-6
    print(
        f"\nexact NLL {exact.mean():.4f} bits/dim, bound {bound.mean():.4f}, "
        f"difference {gap.mean():+.4f} +- {stderr:.4f}"
    )
    assert stderr < 0.02, "the comparison must be sharp enough to tell the fixed-variance bounds apart"
    assert abs(gap.mean() - expected_gap) < Z * stderr
    assert out["prior_bpd"].max().item() < 1e-4
    assert torch.isfinite(out["terms_bpd"]).all()
    # Per timestep, the expected KL with the exact reverse step is 0.5 log(Var_true / beta~_t) nats (module docstring).
    analytic = 0.5 * np.log(_reverse_variance(np.arange(1, T)) / BETA_TILDE[1:, None]).mean(axis=1) / LN2
    measured = out["terms_bpd"][:, 1:].mean(dim=0).numpy()
    np.testing.assert_allclose(measured[:20], analytic[:20], rtol=0.05)
    assert abs(measured.sum() - analytic.sum()) < 0.05 * analytic.sum()


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_fixed_variance_bound_is_looser_by_the_variance_mismatch(diffusion, variance_type):
    n = 512
    x0 = torch.from_numpy(_discretized_gaussian_data(n, seed=3)[0])
    exact_var = vlb_terms(
        _optimal_model(True), diffusion, x0, "eps", learn_variance=True, generator=torch.Generator().manual_seed(4)
    )
    fixed = vlb_terms(
        _optimal_model(False),
        diffusion,
        x0,
        "eps",
        variance_type=variance_type,
        generator=torch.Generator().manual_seed(4),
    )
    true_var = _reverse_variance(np.arange(T))
    fixed_var = (
        np.exp(LOG_BETA_TILDE_CLIPPED)
        if variance_type == "fixed_small"
        else np.concatenate([BETA_TILDE[1:2], BETAS[1:]])
    )
    r = true_var / fixed_var[:, None]
    predicted = (0.5 * (r - 1 - np.log(r))).mean(axis=1) / LN2  # KL(N(0, Var_true) || N(0, Sigma_fixed)) per t
    excess = (fixed["terms_bpd"] - exact_var["terms_bpd"]).numpy()  # the same noise draws: most of the noise cancels
    kl_excess = excess[:, 1:].sum(axis=1)
    print(
        f"\n{variance_type}: KL-term excess {kl_excess.mean():.4f} +- {kl_excess.std() / math.sqrt(n):.4f}, "
        f"predicted {predicted[1:].sum():.4f}"
    )
    assert abs(kl_excess.mean() - predicted[1:].sum()) < Z * kl_excess.std() / math.sqrt(n) + 1e-3 * predicted[1:].sum()
    assert excess[:, 0].mean() > 0  # the decoder with the wrong variance is worse too
    assert (fixed["total_bpd"] - exact_var["total_bpd"]).mean().item() > 0.05


def test_strided_estimate_is_unbiased(diffusion):
    n = 1024
    x0 = torch.from_numpy(_discretized_gaussian_data(n, seed=5)[0])
    model = _optimal_model(True)
    full = vlb_terms(model, diffusion, x0, "eps", learn_variance=True, generator=torch.Generator().manual_seed(6))[
        "total_bpd"
    ]
    strided = vlb_terms(
        model, diffusion, x0, "eps", learn_variance=True, stride=25, generator=torch.Generator().manual_seed(7)
    )
    d = (strided["total_bpd"] - full).numpy()
    assert abs(d.mean()) < Z * d.std() / math.sqrt(n)
    evaluated = (~strided["terms_bpd"].isnan()).sum(dim=1)
    assert (evaluated == 1 + 40).all()  # the decoder and one t per block of 25 in 1..999


def test_explicit_timesteps(diffusion):
    x0 = torch.from_numpy(_discretized_gaussian_data(16, seed=8)[0])
    model = _optimal_model(True)
    full = vlb_terms(model, diffusion, x0, "eps", learn_variance=True, generator=torch.Generator().manual_seed(9))
    every = vlb_terms(
        model, diffusion, x0, "eps", learn_variance=True, timesteps=range(T), generator=torch.Generator().manual_seed(9)
    )
    torch.testing.assert_close(every["total_bpd"], full["total_bpd"], rtol=0, atol=0)
    subset = vlb_terms(model, diffusion, x0, "eps", learn_variance=True, timesteps=[1, 5, 500, 999])
    assert (~subset["terms_bpd"].isnan()).sum(dim=1).eq(5).all()  # t = 0 is always added
    # The interpolation weights integrate any linear profile exactly.
    ts = np.array([1, 3, 10, 200, 999])
    w = _kl_sum_weights(T, ts)
    f = lambda t: 2.0 + 0.01 * t  # noqa: E731
    assert (w * f(ts)).sum() == pytest.approx(f(np.arange(1, T)).sum(), rel=1e-12)
    with pytest.raises(ValueError, match="either timesteps or stride"):
        vlb_terms(model, diffusion, x0, "eps", learn_variance=True, timesteps=[1], stride=2)


def test_learned_range_endpoints(diffusion):
    model_log_variance = diffusion.reverse.log_variance  # (step, like, variance_type, var_values): the full chain
    t = torch.arange(T)
    like = torch.zeros(T, 1, dtype=torch.float64)
    ones = torch.ones(T, 1, dtype=torch.float64)
    np.testing.assert_allclose(
        model_log_variance(t, like, "learned_range", ones).squeeze(1).numpy(), np.log(BETAS), rtol=1e-12
    )
    np.testing.assert_allclose(
        model_log_variance(t, like, "learned_range", -ones).squeeze(1).numpy(), LOG_BETA_TILDE_CLIPPED, rtol=1e-12
    )
    half = model_log_variance(t, like, "learned_range", 0 * ones).squeeze(1).numpy()
    np.testing.assert_allclose(half, 0.5 * (np.log(BETAS) + LOG_BETA_TILDE_CLIPPED), rtol=1e-12)


def test_bits_per_dim_over_a_loader(diffusion):
    x0 = torch.from_numpy(_discretized_gaussian_data(24, seed=10)[0]).float()
    model = _optimal_model(True)
    f32 = lambda x, t: model(x.double(), t).float()  # noqa: E731  a float32 "network"
    g1 = torch.Generator().manual_seed(11)
    loader = [(x0[:10], torch.zeros(10)), (x0[10:20], torch.zeros(10)), (x0[20:], torch.zeros(4))]
    res = bits_per_dim(f32, diffusion, loader, "eps", learn_variance=True, stride=50, max_batches=2, generator=g1)
    g2 = torch.Generator().manual_seed(11)
    parts = [
        vlb_terms(f32, diffusion, x0[a:b], "eps", learn_variance=True, stride=50, generator=g2)
        for a, b in ((0, 10), (10, 20))
    ]
    total = torch.cat([p["total_bpd"] for p in parts])
    assert res["num_samples"] == 20
    assert res["total_bpd"] == pytest.approx(total.mean().item(), rel=1e-12)
    assert res["total_bpd_stderr"] == pytest.approx(total.std().item() / math.sqrt(20), rel=1e-9)
    assert res["total_bpd"] == pytest.approx(res["prior_bpd"] + res["decoder_bpd"] + res["kl_bpd"], rel=1e-12)
    assert res["terms_bpd"].shape == (T,) and res["terms_count"][0].item() == 20
    assert math.isfinite(res["terms_bpd"][0].item())
    # Labels are passed through on request.
    seen = []
    labelled = lambda x, t, y: (seen.append(y), f32(x, t))[1]  # noqa: E731
    bits_per_dim(labelled, diffusion, loader[:1], "eps", learn_variance=True, stride=500, use_labels=True)
    assert seen and all(y is loader[0][1] for y in seen)


def test_bits_per_dim_rejects_data_off_the_grid(diffusion):
    model = _optimal_model(False)
    off = [torch.full((2, M.size), 0.123)]
    with pytest.raises(ValueError, match="256-level grid"):
        bits_per_dim(model, diffusion, off, "eps", stride=500)
    res = bits_per_dim(model, diffusion, off, "eps", stride=500, check_grid=False)
    assert math.isfinite(res["total_bpd"])
