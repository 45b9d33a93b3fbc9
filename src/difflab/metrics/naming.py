"""Metric names that say what they measured: ``val/fid_digits-lenet_n1000_dpmpp2m20``."""

from __future__ import annotations

__all__ = ["sampler_label", "metric_name", "extractor_label"]

LENET_EXTRACTORS = ("digits", "mnist", "fashion_mnist")


def extractor_label(name: str) -> str:
    """The name an extractor goes by in metric names: ``digits`` -> ``digits-lenet``, ``inception`` -> ``inception``."""
    return f"{name}-lenet" if name in LENET_EXTRACTORS else name


def sampler_label(sampler_name: str, steps: int) -> str:
    """``ddim`` with 50 steps -> ``ddim50``; ``dpmpp_2m`` with 20 -> ``dpmpp2m20``."""
    return f"{sampler_name.replace('_', '')}{int(steps)}"


def metric_name(
    metric: str, extractor: str | None, num_samples: int, sampler_name: str, steps: int, prefix: str = "val/"
) -> str:
    """``<prefix><metric>_<extractor>_n<num_samples>_<sampler><steps>`` (no extractor part for 2-D metrics)."""
    parts = [metric] + ([extractor] if extractor else []) + [f"n{int(num_samples)}", sampler_label(sampler_name, steps)]
    return prefix + "_".join(parts)
