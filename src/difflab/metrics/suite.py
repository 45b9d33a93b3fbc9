"""The sample-based metrics (fid, kid, inception_score, precision_recall, two_d) on one set of generated samples.

Features are extracted once per batch and fed to every metric. FID, KID and IS are torchmetrics' metrics
(their math, their distributed state sync) on those features; the real side of FID and KID comes from the
cached :class:`ReferenceStatistics`: FID's sums are loaded on rank 0 only (torchmetrics sums them over
ranks), KID's real features are split into contiguous shards (it concatenates them in rank order). Under DDP every
rank updates with its own share of the samples and every rank calls ``compute`` (no rank-zero-only deadlock); all
get the same values. With several references (train and val splits) the metrics that compare with one get a state
per split, all fed the same features.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.utilities import dim_zero_cat

from difflab.metrics.naming import REFERENCE_METRICS
from difflab.metrics.precision_recall import precision_recall
from difflab.metrics.reference import ReferenceStatistics
from difflab.metrics.two_d import wasserstein2
from difflab.utils.checks import check_int

__all__ = ["MetricSuite", "SAMPLE_METRICS", "FeatureInput", "PointSet", "check_count", "check_two_d_count",
           "rank_share", "sample_metric_counts"]

SAMPLE_METRICS = ("fid", "kid", "inception_score", "precision_recall", "two_d")
IMAGE_METRICS = ("fid", "kid", "inception_score", "precision_recall")


def rank_share(num_items: int, rank: int, world_size: int) -> range:
    """The contiguous block of ``num_items`` indices that ``rank`` holds (blocks differ by at most one item).

    Gathering the blocks in rank order gives back 0..num_items-1, so a concatenated state is the same as in
    one process."""
    return range(rank * num_items // world_size, (rank + 1) * num_items // world_size)


class FeatureInput(nn.Identity):
    """Hands precomputed features to a torchmetrics metric in place of its network."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


class PointSet(Metric):
    """Generated points/features gathered over ranks (cat state); ``compute`` returns them all."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("points", default=[], dist_reduce_fx="cat")

    def update(self, points: torch.Tensor) -> None:
        self.points.append(points.double())

    def compute(self) -> torch.Tensor:
        return dim_zero_cat(self.points)


def _one_chunk_per_rank(metric: Metric) -> None:
    """Concatenate each list state into one tensor, so that the gather over ranks yields rank 0's samples,
    then rank 1's, ...: the global sample order, on which KID's random subsets depend. (torchmetrics gathers
    list states element by element, which interleaves the ranks' batches.)"""
    for name in metric._defaults:
        value = getattr(metric, name)
        if isinstance(value, list) and len(value) > 1:
            setattr(metric, name, [dim_zero_cat(value)])


def check_count(metric: str, n: Any, minimum: int = 2) -> int:
    """``metrics.<metric>.num_samples`` as an int, or a ValueError naming it when it is not an integer >= minimum."""
    return check_int(f"metrics.{metric}.num_samples", n, minimum)


def sample_metric_counts(config: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """``num_samples`` of each sample metric in ``config``, checked: known names, integer counts >= 2."""
    unknown = set(config) - set(SAMPLE_METRICS)
    if unknown:
        raise ValueError(
            f"metrics: {sorted(unknown)} are not sample metrics; choose from {list(SAMPLE_METRICS)} (and nll)")
    return {m: check_count(m, c.get("num_samples")) for m, c in config.items()}


def check_two_d_count(num_samples: int, held_out: int) -> None:
    """W2 is computed between equal-size sets: ``metrics.two_d.num_samples`` must equal the held-out point count."""
    if num_samples != held_out:
        raise ValueError(f"metrics.two_d.num_samples={num_samples!r} must equal the number of held-out points "
                         f"({held_out}): W2 is computed between equal-size sets")


@dataclass
class _Entry:
    """One computed state: its metric, logged name, torchmetrics state and the reference it compares with."""

    metric: str
    name: str
    state: Metric
    reference: ReferenceStatistics | None


class MetricSuite:
    """Builds the configured metrics; ``update(x, indices)`` takes generated images, ``compute()`` the values.

    ``config`` maps a metric name (one of :data:`SAMPLE_METRICS`) to its options (``num_samples`` and
    metric-specific ones); ``names`` maps it to the name it is logged under. Metric m sees the samples whose
    global index is below its ``num_samples``.

    Several references: ``reference`` may map split -> statistics (e.g. ``{"train": ..., "val": ...}``); then each
    metric that compares with a reference (:data:`REFERENCE_METRICS`) has one state per split, all fed the same
    features, and its ``names`` entry maps each split to its logged name.
    """

    def __init__(
        self,
        config: Mapping[str, Mapping[str, Any]],
        names: Mapping[str, str | Mapping[str, str]],
        extractor: nn.Module | None,
        reference: ReferenceStatistics | Mapping[str, ReferenceStatistics] | None,
        reference_points: torch.Tensor | None = None,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config, self.extractor, self.device = dict(config), extractor, device
        self.num_samples = sample_metric_counts(self.config)
        needs_features = [m for m in self.config if m in IMAGE_METRICS]
        if needs_features and (extractor is None or not reference):
            raise ValueError(
                f"metrics {needs_features} need a feature extractor (features=...) and reference statistics")
        references = reference if isinstance(reference, Mapping) else None
        self.entries: list[_Entry] = []
        for metric, options in self.config.items():
            if metric in REFERENCE_METRICS and references is not None:
                split_names = names[metric]
                if not isinstance(split_names, Mapping) or set(split_names) != set(references):
                    raise ValueError(f"names[{metric!r}]={split_names!r} must map each reference split "
                                     f"{list(references)} to a logged name")
                todo = [(split_names[split], stats) for split, stats in references.items()]
            else:
                todo = [(names[metric], reference if references is None else None)]
            for name, stats in todo:
                state = self._build(metric, options, stats, reference_points, rank, world_size).to(device)
                self.entries.append(_Entry(metric, str(name), state, stats))
        if reference:
            first = reference if references is None else next(iter(references.values()))
            self._warn_small(first.features.shape[1])

    def _warn_small(self, dim: int) -> None:
        for metric in ("fid", "kid", "precision_recall"):
            n = self.num_samples.get(metric)
            if n is not None and n < dim:
                warnings.warn(f"metrics.{metric}.num_samples={n} is below the feature dimension {dim}: "
                              "the covariance is singular and the value strongly biased upwards", stacklevel=3)
            elif metric == "fid" and n is not None and n < 1000:
                warnings.warn(f"metrics.fid.num_samples={n}: FID is biased upwards at small n (it falls as n grows); "
                              "compare values only at the same n", stacklevel=3)

    def _build(
        self,
        metric: str,
        options: Mapping[str, Any],
        reference: ReferenceStatistics | None,
        points: torch.Tensor | None,
        rank: int,
        world_size: int,
    ) -> Metric:
        if metric == "fid":
            fid = FrechetInceptionDistance(feature=FeatureInput(reference.features.shape[1]), reset_real_features=False)
            if rank == 0:  # summed over ranks: the reference must be counted once
                n, mu, sigma = reference.num_samples, reference.mu, reference.sigma
                fid.real_features_sum = (mu * n).double()
                fid.real_features_cov_sum = (sigma * (n - 1) + n * torch.outer(mu, mu)).double()
                fid.real_features_num_samples = torch.tensor(n, dtype=torch.long)
            return fid
        if metric == "kid":
            subset_size = options.get("subset_size") or min(1000, self.num_samples["kid"], reference.num_samples)
            if subset_size > min(self.num_samples["kid"], reference.num_samples):
                raise ValueError(f"metrics.kid.subset_size={subset_size} exceeds the generated "
                                 f"({self.num_samples['kid']}) or reference ({reference.num_samples}) sample count")
            kid = KernelInceptionDistance(
                feature=FeatureInput(reference.features.shape[1]), subsets=int(options.get("subsets", 100)),
                subset_size=int(subset_size), degree=int(options.get("degree", 3)), gamma=options.get("gamma"),
                coef=float(options.get("coef", 1.0)), reset_real_features=False,
            )
            share = rank_share(reference.num_samples, rank, world_size)
            kid.real_features.append(reference.features[share.start:share.stop].float())
            return kid
        if metric == "inception_score":
            return InceptionScore(feature=FeatureInput(1), splits=int(options.get("splits", 10)))
        if metric == "precision_recall":
            return PointSet()
        if points is None:
            raise ValueError("metrics.two_d needs held-out points of 2-D data (dataset=moons)")
        self.reference_points = points
        if points.dim() != 2 or points.shape[1] != 2:
            raise ValueError(f"metrics.two_d is for 2-D data; the dataset's points have shape {list(points.shape)}")
        check_two_d_count(self.num_samples["two_d"], len(points))
        return PointSet()

    @property
    def max_samples(self) -> int:
        """How many samples the evaluation draws (over all ranks)."""
        return max(self.num_samples.values())

    @torch.no_grad()
    def update(self, x: torch.Tensor, indices: torch.Tensor, features: bool = False) -> None:
        """Feed generated samples ``x`` (images in [-1, 1]) whose global sample indices are ``indices``.

        With ``features=True`` ``x`` already holds the extractor's features (the inception score needs images).
        Features and class scores are computed once per batch, whatever the number of metrics and references.
        """
        x = x.to(self.device) if features else x.to(self.device).clamp(-1, 1)
        feats = x.float() if features else None
        logits = None
        for entry in self.entries:
            metric, state = entry.metric, entry.state
            keep = indices.to(x.device) < self.num_samples[metric]
            if not bool(keep.any()):
                continue
            if metric == "two_d":
                state.update(x[keep].reshape(int(keep.sum()), -1))
            elif metric == "inception_score":
                if features:
                    raise ValueError("metrics.inception_score needs images, not features")
                logits = self.extractor.logits(x) if logits is None else logits
                state.update(logits[keep].float())
            else:
                feats = self.extractor(x).float() if feats is None else feats
                if metric in ("fid", "kid"):
                    state.update(feats[keep], real=False)
                else:
                    state.update(feats[keep])

    def compute(self, seed: int | None = None) -> dict[str, float]:
        """Every metric's value(s) by logged name; all ranks must call it.

        With ``seed``, the global torch RNG is seeded with it before each value is computed (KID's random subsets,
        the inception score's split permutation), so a value depends neither on which other metrics nor on which
        other references are computed beside it."""
        out: dict[str, float] = {}
        for entry in self.entries:
            metric, state, name = entry.metric, entry.state, entry.name
            _one_chunk_per_rank(state)
            if seed is not None:
                torch.manual_seed(seed)
            if metric in ("fid",):
                out[name] = float(state.compute())
            elif metric == "kid":
                mean, std = state.compute()
                out[name], out[f"{name}_std"] = float(mean), float(std)
            elif metric == "inception_score":
                mean, std = state.compute()
                out[name], out[f"{name}_std"] = float(mean), float(std)
            elif metric == "precision_recall":
                k = int(self.config[metric].get("k", 3))
                precision, recall = precision_recall(entry.reference.features.to(self.device), state.compute(), k=k)
                out[name.replace("precision_recall", "precision")] = precision
                out[name.replace("precision_recall", "recall")] = recall
            else:
                out[name] = wasserstein2(state.compute(), self.reference_points)
            if not math.isfinite(next(reversed(out.values()))):
                warnings.warn(f"{name} is not finite", stacklevel=2)
        return out

    def reset(self) -> None:
        """Forget the generated samples (the reference stays)."""
        for entry in self.entries:
            entry.state.reset()
