"""The scorer refuses, before any work, what it could not score: the likelihood of continuous data."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from difflab.data import DigitsDataModule, MoonsDataModule
from difflab.scoring import SampleScorer


def scorer(metrics):
    return SampleScorer(metrics=metrics, features=None, sampler={"name": "ddim", "steps": 2},
                        reference={"split": "train"}, dataset={})


def test_nll_of_continuous_data_is_refused_before_any_work():
    with pytest.raises(ValueError,
                       match=r"^metrics=\[nll\] needs data on a grid of levels .* dataset='moons' is continuous"):
        scorer({"nll": {"stride": 10}}).check_data(MoonsDataModule())


def test_nll_of_quantised_data_passes():
    scorer({"nll": {"stride": 10}}).check_data(DigitsDataModule())  # 17 levels: no error


class _PointsModule:
    """Stands in for a trained module: 'samples' are given points (data space), drawn in order."""

    device = "cpu"
    training = False

    def __init__(self, points):
        self.points, self.schedule = points, None

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def sample(self, sampler, count, seed=0, start_index=0, **kwargs):
        return self.points[start_index:start_index + count]


def test_w2_of_both_moons_scalings_is_measured_in_the_box_space(monkeypatch):
    import torch
    from sklearn.datasets import make_moons

    from difflab.data.moons import to_box
    from difflab.metrics.two_d import wasserstein2

    monkeypatch.setattr(SampleScorer, "build_sampler", lambda self, schedule: SimpleNamespace(nfe=0))  # unused
    # the same 200 points (make_moons coordinates, off the data), given to each scaling in its own data space
    raw = torch.from_numpy(make_moons(n_samples=200, noise=0.1, random_state=7)[0]).float() + 0.05
    values = {}
    for scaling in ("box", "standardize"):
        dm = MoonsDataModule(num_samples=2000, scaling=scaling)
        sc = SampleScorer(metrics={"two_d": {"num_samples": 200}}, features=None,
                          sampler={"name": "ddim", "steps": 2}, reference={"split": "train"}, dataset={})
        values[scaling] = next(iter(sc.score(_PointsModule(dm.to_data_space(raw)), dm).values()))
    expected = wasserstein2(to_box(raw), MoonsDataModule(num_samples=2000).real_samples("val"))
    assert values["box"] == pytest.approx(expected, rel=1e-6)
    assert values["standardize"] == pytest.approx(expected, rel=1e-5)
