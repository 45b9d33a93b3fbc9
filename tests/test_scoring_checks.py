"""The scorer refuses, before any work, what it could not score: the likelihood of continuous data."""

from __future__ import annotations

import pytest

from difflab.data import DigitsDataModule, MoonsDataModule
from difflab.samplers import make_sampler
from difflab.scoring import SampleScorer


def scorer(metrics):
    return SampleScorer(metrics=metrics, features=None,
                        sampler=lambda schedule: make_sampler("ddim", schedule=schedule, steps=2),
                        sampler_name="ddim", sampler_steps=2, reference={"split": "train"}, dataset={})


def test_nll_of_continuous_data_is_refused_before_any_work():
    with pytest.raises(ValueError,
                       match=r"^metrics=\[nll\] needs data on a grid of levels .* dataset='moons' is continuous"):
        scorer({"nll": {"stride": 10}}).check_data(MoonsDataModule())


def test_nll_of_quantised_data_passes():
    scorer({"nll": {"stride": 10}}).check_data(DigitsDataModule())  # 17 levels: no error
