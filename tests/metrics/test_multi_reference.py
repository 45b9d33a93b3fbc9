"""One set of samples scored against several reference splits: the values against each split are exactly those of a
suite holding that split alone, features are extracted once per batch, and KID/IS do not depend on their neighbours."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from difflab.metrics import MetricSuite, ReferenceStatistics, frechet_distance, gaussian_statistics

DIM = 8
CONFIG = {"fid": {"num_samples": 60}, "kid": {"num_samples": 60, "subset_size": 20, "subsets": 10},
          "inception_score": {"num_samples": 60, "splits": 3}, "precision_recall": {"num_samples": 50, "k": 3}}


class CountingExtractor(nn.Module):
    """Features = the images (already DIM-vectors in [-1, 1]); class scores a fixed linear map. Counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.weight = torch.linspace(-1, 1, DIM * 5).reshape(DIM, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x @ self.weight


def reference(seed: int, n: int, shift: float) -> ReferenceStatistics:
    features = (torch.rand(n, DIM, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8 + shift).float()
    mu, sigma = gaussian_statistics(features)
    return ReferenceStatistics(features, mu, sigma, {})


def names(metrics, splits=None) -> dict:
    def name(m, split):
        return f"val/{m}_x" + ("" if split in (None, "train") else f"_ref{split}")
    return {m: ({s: name(m, s) for s in splits} if splits and m != "inception_score" else name(m, None))
            for m in metrics}


def score(config, names_, reference_, extractor=None, seed=123) -> dict[str, float]:
    fake = torch.rand(60, DIM, generator=torch.Generator().manual_seed(7)) * 1.8 - 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-n warnings
        suite = MetricSuite(config, names_, extractor or CountingExtractor(), reference_)
    for start in range(0, 60, 16):
        stop = min(start + 16, 60)
        suite.update(fake[start:stop], torch.arange(start, stop))
    with torch.random.fork_rng(devices=[]):
        return suite.compute(seed=seed)


@pytest.fixture(scope="module")
def refs():
    return {"train": reference(0, 80, 0.0), "val": reference(1, 50, 0.1)}


def test_each_split_gives_exactly_the_values_of_a_suite_holding_it_alone(refs):
    extractor = CountingExtractor()
    both = score(CONFIG, names(CONFIG, ["train", "val"]), refs, extractor)
    assert extractor.calls == 2 * 4  # features and class scores once per batch (4 batches), whatever the splits
    alone_train = score(CONFIG, names(CONFIG), refs["train"])
    alone_val = score(CONFIG, names(CONFIG, ["val"]), {"val": refs["val"]})
    assert set(both) == set(alone_train) | set(alone_val)
    assert {k: both[k] for k in alone_train} == alone_train  # exact: same features, same seeded subsets
    assert {k: both[k] for k in alone_val} == alone_val
    assert both["val/fid_x"] != both["val/fid_x_refval"] and both["val/kid_x_std"] != both["val/kid_x_refval_std"]
    assert {"val/precision_x_refval", "val/recall_x_refval", "val/inception_score_x_std"} <= set(both)
    assert "val/inception_score_x_refval" not in both  # IS compares with no reference: scored once


def test_fid_against_the_val_split_is_the_frechet_distance_to_its_statistics(refs):
    fake = (torch.rand(60, DIM, generator=torch.Generator().manual_seed(7)) * 1.8 - 0.9).double()
    mu, sigma = gaussian_statistics(fake)
    values = score({"fid": CONFIG["fid"]}, names(["fid"], ["train", "val"]), refs)
    for split, name in (("train", "val/fid_x"), ("val", "val/fid_x_refval")):
        expected = frechet_distance(mu.numpy(), sigma.numpy(), refs[split].mu.numpy(), refs[split].sigma.numpy())
        assert values[name] == pytest.approx(expected, rel=1e-6, abs=1e-9)
        assert np.isfinite(values[name])


def test_kid_does_not_depend_on_the_metrics_computed_before_it(refs):
    kid = {"kid": CONFIG["kid"]}
    after_is = score({"inception_score": CONFIG["inception_score"], **kid}, names(["inception_score", "kid"]),
                     refs["train"])
    alone = score(kid, names(["kid"]), refs["train"])
    assert after_is["val/kid_x"] == alone["val/kid_x"] and after_is["val/kid_x_std"] == alone["val/kid_x_std"]


def test_names_must_cover_every_reference_split(refs):
    with pytest.raises(ValueError, match=r"names\['fid'\]=.* must map each reference split \['train', 'val'\]"):
        MetricSuite({"fid": CONFIG["fid"]}, {"fid": "val/fid_x"}, CountingExtractor(), refs)
