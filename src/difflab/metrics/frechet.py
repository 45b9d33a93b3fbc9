"""The Fréchet distance between Gaussians, and the mean/covariance of a feature set (float64)."""

from __future__ import annotations

import torch

__all__ = ["frechet_distance", "gaussian_statistics"]


def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (denominator n - 1) of ``features`` [n, d], in float64."""
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f"gaussian_statistics needs a [n >= 2, d] feature matrix, got {list(features.shape)}")
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Dowson & Landau 1982; FID, Heusel et al. 2017).

    Tr (S1 S2)^(1/2) is computed as the sum of the square roots of the eigenvalues of the symmetric
    S1^(1/2) S2 S1^(1/2), which has the same spectrum and stays real for PSD inputs; float64 throughout.
    """
    mu1, mu2 = torch.as_tensor(mu1).double(), torch.as_tensor(mu2).double()
    s1, s2 = torch.as_tensor(sigma1).double(), torch.as_tensor(sigma2).double()
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"frechet_distance: shapes mu1 {list(mu1.shape)}, sigma1 {list(s1.shape)}, "
                         f"mu2 {list(mu2.shape)}, sigma2 {list(s2.shape)} do not match")
    evals1, evecs1 = torch.linalg.eigh((s1 + s1.T) / 2)
    root1 = (evecs1 * evals1.clamp_min(0).sqrt()) @ evecs1.T
    middle = root1 @ s2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * trace_sqrt)
