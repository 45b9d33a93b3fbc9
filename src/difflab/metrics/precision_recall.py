"""Improved precision and recall (Kynkäänniemi et al. 2019) on feature sets, k-nearest-neighbour manifolds."""

from __future__ import annotations

import torch

__all__ = ["knn_radii", "manifold_coverage", "precision_recall"]


def knn_radii(features: torch.Tensor, k: int = 3, batch_size: int = 4096) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the radius of its hypersphere)."""
    if not 1 <= k < len(features):
        raise ValueError(f"precision_recall: k={k} must be >= 1 and below the number of points ({len(features)})")
    f = features.double()
    radii = [torch.cdist(f[i:i + batch_size], f).kthvalue(k + 1, dim=1).values for i in range(0, len(f), batch_size)]
    return torch.cat(radii)  # k + 1: the smallest distance is the point itself (0)


def manifold_coverage(
    manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, batch_size: int = 4096
) -> float:
    """Fraction of ``queries`` inside at least one ball (``manifold[j]``, ``radii[j]``)."""
    m, q = manifold.double(), queries.double()
    inside = [(torch.cdist(q[i:i + batch_size], m) <= radii[None]).any(dim=1) for i in range(0, len(q), batch_size)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall): the share of fake samples on the real manifold, and of real ones on the fake manifold."""
    return (
        manifold_coverage(real, knn_radii(real, k), fake),
        manifold_coverage(fake, knn_radii(fake, k), real),
    )
