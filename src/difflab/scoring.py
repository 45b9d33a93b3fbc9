"""Scoring a DiffusionModule: draw samples split over ranks by per-sample seeds, feed the metric suite, add NLL.

Shared by the training callback (:class:`difflab.callbacks.PeriodicScoring`) and ``difflab-evaluate``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from difflab.metrics import (
    MetricSuite,
    build_feature_extractor,
    metric_name,
    reference_key,
    reference_statistics,
)
from difflab.metrics.naming import DEFAULT_REFERENCE_SPLIT, REFERENCE_METRICS, reference_splits, sampler_label
from difflab.metrics.suite import check_two_d_count, rank_share, sample_metric_counts
from difflab.samplers import Sampler, make_sampler
from difflab.utils.checks import check_int
from difflab.utils.seeding import Stream, derive_seed

__all__ = ["SAMPLER_TARGET", "SampleScorer", "score_nll"]

SAMPLER_TARGET = "difflab.samplers.make_sampler"  # the _target_ of every conf/sampler/*.yaml


def metric_space(datamodule: Any, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the space the sample metrics compare points in: the data module's ``to_metric_space`` (two moons:
    the box scaling's space whatever ``dataset.scaling``, so W2 values are comparable), else ``x`` itself."""
    to_metric_space = getattr(datamodule, "to_metric_space", None)
    return to_metric_space(x) if to_metric_space is not None else x


def score_nll(
    module: Any, loader: Any, stride: int = 10, max_batches: int | None = None, seed: int = 0, use_ema: bool = True
) -> dict[str, Any]:
    """The variational bound of ``loader``'s data in bits/dim (total, prior, decoder) from ``module``'s network."""
    network = module.sampling_network(use_ema)
    conditional = module.num_classes is not None
    generator = torch.Generator(device=module.device).manual_seed(derive_seed(seed, Stream.SCORING))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        return module.objective.bits_per_dim(
            network if conditional else (lambda x, t: network(x, t)), module.diffusion, loader,
            stride=stride, max_batches=max_batches, use_labels=conditional, device=module.device, generator=generator,
        )


@dataclass
class SampleScorer:
    """Everything one evaluation needs besides the model; ``score`` runs it.

    ``metrics``: metric name -> options (the ``metrics`` config group); ``features``: ``{name, weights_path}``
    or None; ``sampler``: the sampler's settings (a ``sampler`` config node: ``name``, ``steps`` and its options),
    which build the sampler and name the metrics; ``reference``: ``{split, num_samples, cache_dir}``, where
    ``split`` is ``train``, ``val`` or a list of them (the samples are drawn once and compared with each);
    ``config_key``: where ``reference`` sits in the config, for error messages.
    """

    metrics: Mapping[str, Mapping[str, Any]]
    features: Mapping[str, Any] | None
    sampler: Mapping[str, Any]
    reference: Mapping[str, Any]
    dataset: Mapping[str, Any]
    seed: int = 0
    batch_size: int = 500
    use_ema: bool = True
    class_label: int | str | None = "all"
    guidance_scale: float = 1.0
    config_key: str = "evaluation.reference"
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = {k: dict(v) for k, v in (self.metrics or {}).items()}
        self.sampler = dict(self.sampler)
        target = self.sampler.get("_target_", SAMPLER_TARGET)
        if target != SAMPLER_TARGET:
            raise ValueError(f"sampler._target_={target!r}: scored samplers are built by {SAMPLER_TARGET}")
        sampler_label(self.sampler)  # checked now: the settings name the metrics
        self.splits = reference_splits(self.reference.get("split", DEFAULT_REFERENCE_SPLIT),
                                       f"{self.config_key}.split")
        check_int("evaluation.batch_size", self.batch_size, 1)
        self.extractor = None
        image_metrics = [m for m in self.metrics if m not in ("two_d", "nll")]
        if image_metrics:
            if not self.features:
                raise ValueError(f"metrics {image_metrics} need a feature extractor: "
                                 "set features=digits|mnist|fashion_mnist|inception")
            self.extractor = build_feature_extractor(self.features["name"], self.features.get("weights_path"))
        self.sample_metrics = {k: v for k, v in self.metrics.items() if k != "nll"}
        sample_metric_counts(self.sample_metrics)  # checked now, not at the first evaluation
        self.suite: MetricSuite | None = None
        self.nfe: int | None = None  # model evaluations per sample of the last score() (None: nothing sampled)

    def build_sampler(self, schedule: Any) -> Sampler:
        """The sampler of ``self.sampler``'s settings for ``schedule``."""
        options = {k: v for k, v in self.sampler.items() if k != "name" and not str(k).startswith("_")}
        return make_sampler(self.sampler["name"], schedule=schedule, **options)

    def names(self) -> dict[str, str | dict[str, str]]:
        """Logged name of each sample metric, e.g. ``val/fid_digits-lenet_n1000_dpmpp2m20``; a metric compared with
        the reference maps each split to its name (``{"train": ..., "val": "val/fid_..._refval"}``)."""
        extractor = self.extractor.metric_name if self.extractor is not None else None

        def name(metric: str, split: str = DEFAULT_REFERENCE_SPLIT) -> str:
            return metric_name(metric, None if metric == "two_d" else extractor,
                               self.sample_metrics[metric]["num_samples"], self.sampler, reference_split=split)

        return {m: {s: name(m, s) for s in self.splits} if m in REFERENCE_METRICS else name(m)
                for m in self.sample_metrics}

    def check_data(self, datamodule: Any) -> None:
        """Before any work: the extractor fits the data, the reference splits exist and hold the samples asked for,
        and the likelihood (``nll``) has quantised data to score."""
        if "nll" in self.metrics and getattr(datamodule, "num_bins", None) is None:
            raise ValueError(
                f"metrics=[nll] needs data on a grid of levels (digits, 8-bit images); dataset={datamodule.name!r} is "
                "continuous (it has no data.num_bins): drop nll from metrics"
            )
        if not self.sample_metrics:
            return
        if self.extractor is not None:
            shape = tuple(datamodule.data_shape)
            self.extractor.check_channels(shape[0] if len(shape) == 3 else None)
        datamodule.setup()
        sizes = {"train": len(datamodule.train_dataset), "val": len(datamodule.val_dataset)}
        wanted = self.reference.get("num_samples")
        smallest = min(self.splits, key=lambda split: sizes[split])
        if self.extractor is not None and wanted is not None and not 2 <= wanted <= sizes[smallest]:
            raise ValueError(f"{self.config_key}.num_samples={wanted!r} must lie in [2, {sizes[smallest]}], "
                             f"the size of the {smallest} split")
        if "two_d" in self.sample_metrics:
            check_two_d_count(self.sample_metrics["two_d"]["num_samples"], sizes["val"])

    def setup(self, datamodule: Any, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu") -> None:
        """Load or compute the reference statistics of every reference split and build the metric suite (once)."""
        if self.suite is not None or not self.sample_metrics:
            return
        start = time.perf_counter()
        references = points = None
        if self.extractor is not None:
            self.extractor.to(device)
            references = {}
            for split in self.splits:
                real = datamodule.real_samples(split, self.reference.get("num_samples"))
                key = reference_key(self.dataset, split, self.extractor.metric_name, self.extractor.weights_sha256,
                                    len(real))
                batches = (real[i:i + self.batch_size] for i in range(0, len(real), self.batch_size))
                references[split] = reference_statistics(self.extractor, batches, key,
                                                          self.reference.get("cache_dir"), device)
        if "two_d" in self.sample_metrics:
            points = metric_space(datamodule, datamodule.real_samples("val"))
        self.suite = MetricSuite(self.sample_metrics, self.names(), self.extractor, references, points, rank=rank,
                                 world_size=world_size, device=device)
        self.timings["reference_s"] = time.perf_counter() - start

    @torch.no_grad()
    def score(self, module: Any, datamodule: Any, rank: int = 0, world_size: int = 1) -> dict[str, float]:
        """Draw this rank's share of the samples, update the metrics, compute them (call on every rank)."""
        self.setup(datamodule, rank, world_size, module.device)
        results: dict[str, float] = {}
        start = time.perf_counter()
        if self.suite is not None:
            self.suite.reset()
            sampler = self.build_sampler(module.schedule)
            share = rank_share(self.suite.max_samples, rank, world_size)
            was_training = module.training
            module.eval()
            with torch.random.fork_rng(devices=[]):
                for first in range(share.start, share.stop, self.batch_size):
                    count = min(self.batch_size, share.stop - first)
                    x = module.sample(sampler, count, seed=self.seed, start_index=first, class_label=self.class_label,
                                      guidance_scale=self.guidance_scale, use_ema=self.use_ema)
                    self.suite.update(metric_space(datamodule, x), torch.arange(first, first + count))
            module.train(was_training)
            self.nfe = sampler.nfe
            self.timings["sampling_s"] = time.perf_counter() - start
            with torch.random.fork_rng(devices=[]):  # KID's random subsets: the same on every rank and every run
                results.update(self.suite.compute(seed=derive_seed(self.seed, Stream.SCORING)))
        if "nll" in self.metrics:
            options = self.metrics["nll"]
            stride, max_batches = int(options.get("stride", 10)), options.get("max_batches")
            nll = score_nll(module, datamodule.val_dataloader(), stride, max_batches, self.seed, self.use_ema)
            name = f"val/nll_bpd_n{nll['num_samples']}_stride{stride}"
            results.update({name: float(nll["total_bpd"]), f"{name}_prior": float(nll["prior_bpd"]),
                            f"{name}_decoder": float(nll["decoder_bpd"])})
        self.timings["total_s"] = time.perf_counter() - start
        return results
