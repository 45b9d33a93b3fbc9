"""Reference statistics of real data (features, mean, covariance), computed once and cached on disk.

The cache key holds everything the numbers depend on: the dataset's settings, the split, the extractor
and the sha256 of its weights, the sample count and the format version. Files are written atomically
(temporary file, then rename) and read with ``weights_only=True``. A cache file is derived data: one that
cannot be used (truncated, not a torch file, another format version, missing or inconsistent entries) is
rebuilt from the data with one warning naming it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from difflab.metrics.frechet import gaussian_statistics
from difflab.utils.files import atomic_torch_save, load_error

__all__ = ["ReferenceStatistics", "reference_key", "reference_statistics", "load_cached", "extract_features",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1


@dataclass
class ReferenceStatistics:
    """Real-data features [n, d] (float32), their mean and covariance (float64), and the cache key."""

    features: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    key: dict[str, Any]

    @property
    def num_samples(self) -> int:
        return len(self.features)


def reference_key(
    dataset: Mapping[str, Any], split: str, extractor_name: str, extractor_sha256: str, num_samples: int
) -> dict[str, Any]:
    """The cache key: dataset settings (loader-only options dropped), split, extractor, weights hash, n."""
    loader_only = {"batch_size", "val_batch_size", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor",
                   "seed", "_target_"}
    data = {k: v for k, v in sorted(dataset.items()) if k not in loader_only}
    return {"format": FORMAT_VERSION, "dataset": data, "split": split, "extractor": extractor_name,
            "extractor_sha256": extractor_sha256, "num_samples": int(num_samples)}


def cache_file(cache_dir: Path, key: Mapping[str, Any]) -> Path:
    """``<cache_dir>/<dataset>_<split>_<extractor>_n<N>_<hash>.pt``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = key["dataset"].get("name", "data")
    return cache_dir / f"{name}_{key['split']}_{key['extractor']}_n{key['num_samples']}_{digest}.pt"


def load_cached(path: Path, key: dict[str, Any]) -> ReferenceStatistics:
    """The statistics stored in ``path`` for ``key``; ValueError saying why when the file cannot be used."""
    try:
        with warnings.catch_warnings():  # torch's own notes on an odd file: the ValueError below says it
            warnings.simplefilter("ignore")
            stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, empty, garbage, pickled objects
        raise ValueError(f"unreadable: {load_error(err)}") from None
    if not isinstance(stored, dict) or not {"features", "mu", "sigma", "key"} <= stored.keys():
        found = sorted(stored) if isinstance(stored, dict) else type(stored).__name__
        raise ValueError(f"not a reference statistics file: it holds {found}, not features, mu, sigma and key")
    try:
        stored_key = json.loads(stored["key"])
    except (TypeError, ValueError):
        raise ValueError("its key is not JSON") from None
    if not isinstance(stored_key, dict) or stored_key.get("format") != FORMAT_VERSION:
        version = stored_key.get("format") if isinstance(stored_key, dict) else None
        raise ValueError(f"format version {version!r}, this difflab writes {FORMAT_VERSION}")
    if stored_key != json.loads(json.dumps(key, sort_keys=True, default=str)):
        raise ValueError("it was computed for another dataset, split, extractor or sample count")
    features, mu, sigma = stored["features"], stored["mu"], stored["sigma"]
    if not all(isinstance(t, torch.Tensor) for t in (features, mu, sigma)) or features.dim() != 2:
        raise ValueError("its features, mu and sigma are not tensors of the expected ranks")
    n, d = features.shape
    if n != key["num_samples"] or tuple(mu.shape) != (d,) or tuple(sigma.shape) != (d, d):
        raise ValueError(f"features {list(features.shape)}, mu {list(mu.shape)}, sigma {list(sigma.shape)} "
                         f"do not fit {key['num_samples']} samples")
    if not (torch.isfinite(mu).all() and torch.isfinite(sigma).all()):
        raise ValueError("its mean or covariance is not finite")
    return ReferenceStatistics(features, mu, sigma, key)


@torch.no_grad()
def extract_features(
    extractor: torch.nn.Module, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Features of every image in ``batches`` (tensors in [-1, 1]), concatenated, float32 on the CPU."""
    return torch.cat([extractor(x.to(device)).float().cpu() for x in batches])


def reference_statistics(
    extractor: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    key: dict[str, Any],
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> ReferenceStatistics:
    """Load the statistics for ``key`` from ``cache_dir``, or compute them from ``batches`` and store them.

    ``batches`` must yield exactly ``key["num_samples"]`` images (checked).
    """
    path = cache_file(Path(cache_dir), key) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return load_cached(path, key)
        except ValueError as err:
            warnings.warn(f"the cached reference statistics {path} cannot be used ({err}); rebuilding them",
                          stacklevel=2)
    features = extract_features(extractor, batches, device)
    if len(features) != key["num_samples"]:
        raise ValueError(f"reference statistics: expected {key['num_samples']} images, got {len(features)}")
    mu, sigma = gaussian_statistics(features)
    if path is not None:
        payload = {"features": features, "mu": mu, "sigma": sigma, "key": json.dumps(key, sort_keys=True, default=str)}
        atomic_torch_save(payload, path)
    return ReferenceStatistics(features, mu, sigma, key)
