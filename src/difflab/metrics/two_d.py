"""Exact 2-Wasserstein distance between two equal-size point sets (for 2-D data such as the two moons)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["wasserstein2"]


def wasserstein2(x: torch.Tensor, y: torch.Tensor) -> float:
    """W2 between the empirical measures of ``x`` and ``y`` ([n, d] each, same n): the optimal matching.

    With equal weights 1/n the optimal transport plan is a permutation (Birkhoff), found exactly by the
    Hungarian algorithm on squared Euclidean costs; returns sqrt(mean matched squared distance).
    """
    if x.dim() != 2 or x.shape != y.shape:
        raise ValueError(
            f"wasserstein2 needs two point sets of the same shape [n, d], got {list(x.shape)} and {list(y.shape)}")
    cost = torch.cdist(x.double().cpu(), y.double().cpu(), compute_mode="donot_use_mm_for_euclid_dist").square().numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))
