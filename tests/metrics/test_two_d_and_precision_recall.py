"""Exact W2 against brute force and translations; improved precision/recall on sets with known answers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from difflab.metrics import precision_recall, wasserstein2

pytestmark = pytest.mark.usefixtures("one_thread")


def test_w2_equals_the_best_of_all_matchings():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    brute = min(sum(float((x[i] - y[p]).square().sum()) for i, p in enumerate(perm))
                for perm in itertools.permutations(range(6)))
    assert wasserstein2(x, y) == pytest.approx(math.sqrt(brute / 6), rel=1e-12)


def test_w2_of_a_translated_set_is_the_translation_length():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 2, generator=g, dtype=torch.float64)
    shift = torch.tensor([0.3, -0.4], dtype=torch.float64)
    assert wasserstein2(x, x[torch.randperm(500, generator=g)] + shift) == pytest.approx(0.5, rel=1e-9)
    assert wasserstein2(x, x.flip(0)) == pytest.approx(0.0, abs=1e-12)


def test_w2_rejects_unequal_sets():
    with pytest.raises(ValueError, match="same shape"):
        wasserstein2(torch.zeros(5, 2), torch.zeros(6, 2))


def test_precision_recall_of_identical_sets_is_one():
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(2))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)


def test_precision_recall_of_far_apart_sets_is_zero():
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g) + 100.0
    assert precision_recall(real, fake, k=3) == (0.0, 0.0)


def test_mode_dropping_lowers_recall_not_precision():
    """Real: two well separated clusters of 200. Fake: exactly the first one -> precision 1, recall 1/2.

    Each real point of the first cluster is a fake point (distance 0, inside its own k-NN ball); no point of
    the second cluster lies within reach of the first, whose k-NN radii are a few units."""
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g) + 50.0
    assert precision_recall(torch.cat([a, b]), a.clone(), k=3) == (1.0, 0.5)
    precision, recall = precision_recall(torch.cat([a, b]), b[:100].clone(), k=3)
    assert precision == 1.0 and 0.2 < recall < 0.5  # half a cluster: fewer real points covered
