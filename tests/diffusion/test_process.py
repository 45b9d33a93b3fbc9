"""The forward process and its posterior against closed forms, Monte Carlo and Bayes' rule computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from difflab.diffusion import GaussianDiffusion, make_schedule

T = 1000
BETAS = np.linspace(1e-4, 0.02, T)  # DDPM linear schedule, independent of the code under test
ABAR = np.cumprod(1.0 - BETAS)


@pytest.fixture(scope="module")
def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(make_schedule("linear", num_timesteps=T))


def test_alpha_bar_gather(diffusion):
    t = torch.tensor([0, 1, 499, 999, 0])
    ab = diffusion.alpha_bar(t)
    assert ab.dtype == torch.float64
    np.testing.assert_allclose(ab.numpy(), ABAR[t.numpy()], rtol=1e-12)


def test_q_sample_with_given_noise_is_the_closed_form(diffusion):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 250, 500, 998, 999])
    a = np.sqrt(ABAR[t.numpy()]).reshape(-1, 1, 1, 1)
    expected = a * x0.numpy() + np.sqrt(1 - a**2) * noise.numpy()
    np.testing.assert_allclose(diffusion.q_sample(x0, t, noise).numpy(), expected, rtol=1e-12, atol=1e-14)
    # float32 data stays float32
    out32 = diffusion.q_sample(x0.float(), t, noise.float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [0, 100, 500, 999])
def test_q_sample_statistics(diffusion, t):
    """With x0 fixed, x_t has mean sqrt(abar_t) x0 and variance 1 - abar_t (per coordinate)."""
    n = 200_000
    x0_value = torch.tensor([0.8, -0.5, 0.0], dtype=torch.float64)
    x0 = x0_value.expand(n, 3).contiguous()
    torch.manual_seed(1234 + t)
    x_t = diffusion.q_sample(x0, torch.full((n,), t, dtype=torch.long)).numpy()
    ab = ABAR[t]
    mean_expected = math.sqrt(ab) * x0_value.numpy()
    var_expected = 1.0 - ab
    se_mean = math.sqrt(var_expected / n)
    se_var = var_expected * math.sqrt(2.0 / (n - 1))
    assert np.all(np.abs(x_t.mean(0) - mean_expected) < 4.5 * se_mean)
    assert np.all(np.abs(x_t.var(0, ddof=1) - var_expected) < 4.5 * se_var)


def test_q_mean_variance(diffusion):
    x0 = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([5, 700])
    mean, var = diffusion.q_mean_variance(x0, t)
    ab = ABAR[t.numpy()][:, None]
    np.testing.assert_allclose(mean.numpy(), np.sqrt(ab) * x0.numpy(), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), np.broadcast_to(1 - ab, (2, 2)), rtol=1e-12)


def _posterior_closed_form(x0: np.ndarray, xt: np.ndarray, t: int) -> tuple[np.ndarray, float]:
    """Ho et al. 2020 eqs. 6-7 with abar_{t-1} = 1 at t = 0 (0-based index t is the paper's t+1)."""
    ab, beta = ABAR[t], BETAS[t]
    ab_prev = ABAR[t - 1] if t > 0 else 1.0
    mean = math.sqrt(ab_prev) * beta / (1 - ab) * x0 + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * xt
    var = (1 - ab_prev) / (1 - ab) * beta
    return mean, var


def _posterior_by_bayes(x0: float, xt: float, t: int) -> tuple[float, float]:
    """Scalar Bayes' rule: prior q(x_{t-1}|x0) = N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}), likelihood
    q(x_t|x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t). Precisions add; the mean is precision-weighted."""
    ab_prev = ABAR[t - 1]
    alpha, beta = 1.0 - BETAS[t], BETAS[t]
    prior_mean, prior_prec = math.sqrt(ab_prev) * x0, 1.0 / (1.0 - ab_prev)
    # As a function of x_{t-1}, N(x_t; sqrt(alpha) x_{t-1}, beta) has precision alpha/beta and mean x_t/sqrt(alpha).
    lik_mean, lik_prec = xt / math.sqrt(alpha), alpha / beta
    prec = prior_prec + lik_prec
    return (prior_prec * prior_mean + lik_prec * lik_mean) / prec, 1.0 / prec


def _posterior_by_quadrature(x0: float, xt: float, t: int) -> tuple[float, float]:
    """Brute force: unnormalised q(x_{t-1}|x0) q(x_t|x_{t-1}) on a fine grid, moments by summation."""
    ab_prev = ABAR[t - 1]
    alpha, beta = 1.0 - BETAS[t], BETAS[t]
    _, var_guess = _posterior_closed_form(np.array(x0), np.array(xt), t)
    centre = math.sqrt(ab_prev) * x0
    half_width = 12 * math.sqrt(1 - ab_prev) + abs(xt) + 1
    grid = np.linspace(centre - half_width, centre + half_width, 400_001)
    log_p = -((grid - math.sqrt(ab_prev) * x0) ** 2) / (2 * (1 - ab_prev)) - (xt - math.sqrt(alpha) * grid) ** 2 / (
        2 * beta
    )
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    mean = float((w * grid).sum())
    var = float((w * (grid - mean) ** 2).sum())
    assert grid[1] - grid[0] < 0.05 * math.sqrt(var_guess)  # the grid resolves the posterior
    return mean, var


@pytest.mark.parametrize("t", [1, 2, 10, 300, 999])
def test_q_posterior_matches_closed_form_bayes_and_quadrature(diffusion, t):
    x0 = torch.tensor([[0.7], [-1.3], [0.0]], dtype=torch.float64)
    xt = torch.tensor([[0.2], [0.9], [-2.5]], dtype=torch.float64)
    tt = torch.full((3,), t, dtype=torch.long)
    mean, var, log_var = diffusion.q_posterior(x0, xt, tt)

    cf_mean, cf_var = _posterior_closed_form(x0.numpy(), xt.numpy(), t)
    np.testing.assert_allclose(mean.numpy(), cf_mean, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(var.numpy().ravel(), cf_var, rtol=1e-10)
    np.testing.assert_allclose(log_var.numpy().ravel(), math.log(cf_var), rtol=1e-10)

    for i in range(3):
        b_mean, b_var = _posterior_by_bayes(float(x0[i]), float(xt[i]), t)
        assert mean[i].item() == pytest.approx(b_mean, rel=1e-9, abs=1e-12)
        assert var[i].item() == pytest.approx(b_var, rel=1e-9)
        q_mean, q_var = _posterior_by_quadrature(float(x0[i]), float(xt[i]), t)
        assert mean[i].item() == pytest.approx(q_mean, rel=1e-6, abs=1e-8)
        assert var[i].item() == pytest.approx(q_var, rel=1e-4)


def test_q_posterior_first_step(diffusion):
    """At the first step (abar_prev = 1) the posterior is a point mass at x0; the log-variance is clipped to
    step 1's."""
    x0 = torch.tensor([[0.4, -0.6]], dtype=torch.float64)
    xt = torch.tensor([[1.5, 2.0]], dtype=torch.float64)
    mean, var, log_var = diffusion.q_posterior(x0, xt, torch.tensor([0]))
    np.testing.assert_allclose(mean.numpy(), x0.numpy(), rtol=1e-12)
    assert var.item() == 0.0
    _, var1 = _posterior_closed_form(np.zeros(1), np.zeros(1), 1)
    assert math.isfinite(log_var.item())
    assert log_var.item() == pytest.approx(math.log(var1), rel=1e-12)


def test_posterior_marginalises_to_forward_marginal(diffusion):
    """Consistency: if x_t ~ q(x_t|x0) and x_{t-1} ~ q(x_{t-1}|x_t, x0), then x_{t-1} ~ q(x_{t-1}|x0)."""
    n, t = 200_000, 400
    torch.manual_seed(7)
    x0 = torch.full((n, 1), 0.9, dtype=torch.float64)
    x_t = diffusion.q_sample(x0, torch.full((n,), t))
    mean, var, _ = diffusion.q_posterior(x0, x_t, torch.full((n,), t))
    x_prev = (mean + var.sqrt() * torch.randn_like(mean)).numpy()
    ab_prev = ABAR[t - 1]
    se_mean, se_var = math.sqrt((1 - ab_prev) / n), (1 - ab_prev) * math.sqrt(2 / (n - 1))
    assert abs(x_prev.mean() - math.sqrt(ab_prev) * 0.9) < 4.5 * se_mean
    assert abs(x_prev.var(ddof=1) - (1 - ab_prev)) < 4.5 * se_var
