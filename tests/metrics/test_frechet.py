"""Fréchet distance and FID against closed forms, scipy's sqrtm, torch-fidelity, and the feeding batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from difflab.metrics import MetricSuite, ReferenceStatistics, frechet_distance, gaussian_statistics

pytestmark = pytest.mark.usefixtures("one_thread")


def random_spd(d: int, generator: torch.Generator) -> torch.Tensor:
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def with_exact_moments(n: int, mu: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """n points whose sample mean is mu and unbiased sample covariance is sigma, exactly."""
    z = torch.randn(n, len(mu), generator=generator, dtype=torch.float64)
    z = z - z.mean(0)
    whiten = torch.linalg.cholesky(torch.linalg.inv(z.T @ z / (n - 1)))
    return z @ whiten @ torch.linalg.cholesky(sigma).T + mu


def suite_fid(fake: torch.Tensor, real: torch.Tensor, batch_size: int = 10_000) -> float:
    """FID through MetricSuite (torchmetrics) with precomputed features fed in batches."""
    mu, sigma = gaussian_statistics(real)
    reference = ReferenceStatistics(real.float(), mu, sigma, key={})
    suite = MetricSuite({"fid": {"num_samples": len(fake)}}, {"fid": "fid"}, torch.nn.Identity(), reference)
    for start in range(0, len(fake), batch_size):
        suite.update(fake[start:start + batch_size], torch.arange(start, min(start + batch_size, len(fake))),
                     features=True)
    return suite.compute()["fid"]


def test_diagonal_gaussians_match_the_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    var1, var2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = float((mu1 - mu2).square().sum() + (var1.sqrt() - var2.sqrt()).square().sum())  # 1 + 6.25 + 4 + 1
    assert frechet_distance(mu1, torch.diag(var1), mu2, torch.diag(var2)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(12.25)


def test_general_covariances_match_scipy_sqrtm():
    g = torch.Generator().manual_seed(0)
    for d in (2, 16, 84):
        s1, s2 = random_spd(d, g), random_spd(d, g)
        mu1, mu2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
        root = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
        expected = float(((mu1 - mu2) ** 2).sum()) + np.trace(s1.numpy() + s2.numpy() - 2 * root)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_metric_on_gaussian_features_equals_the_closed_form():
    """Features built with exactly prescribed sample moments: torchmetrics' FID equals the Fréchet formula."""
    g = torch.Generator().manual_seed(1)
    d = 8
    mu_r, mu_f = torch.zeros(d, dtype=torch.float64), torch.linspace(-1, 1, d, dtype=torch.float64)
    s_r, s_f = random_spd(d, g), random_spd(d, g)
    real, fake = with_exact_moments(3000, mu_r, s_r, g), with_exact_moments(2000, mu_f, s_f, g)
    expected = frechet_distance(mu_f, s_f, mu_r, s_r)
    assert suite_fid(fake, real) == pytest.approx(expected, rel=1e-5)
    assert expected > 1.0


def test_fid_of_a_set_with_itself_is_zero():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1500, 84, generator=g) * torch.linspace(0.1, 3, 84)
    assert abs(suite_fid(x, x)) < 1e-6


def test_fid_does_not_depend_on_the_feeding_batch_size():
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(1200, 32, generator=g), torch.randn(1000, 32, generator=g) * 1.3 + 0.2
    values = [suite_fid(fake, real, batch_size=b) for b in (1000, 64, 7)]
    assert values[1] == pytest.approx(values[0], rel=1e-6) and values[2] == pytest.approx(values[0], rel=1e-6)


def test_agrees_with_torch_fidelity_to_1e_6():
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(2000, 64, generator=g), torch.randn(1000, 64, generator=g) * 0.8 + 0.1
    stats_r, stats_f = fid_features_to_statistics(real), fid_features_to_statistics(fake)
    reference = fid_statistics_to_metric(stats_f, stats_r, verbose=False)["frechet_inception_distance"]
    ours = frechet_distance(*gaussian_statistics(fake), *gaussian_statistics(real))
    assert ours == pytest.approx(reference, rel=1e-6)
    assert suite_fid(fake, real) == pytest.approx(reference, rel=1e-6)
