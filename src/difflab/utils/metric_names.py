"""What a logged metric's name says about it, without importing torch (difflab-report reads names too)."""

from __future__ import annotations

import re

__all__ = ["HIGHER_IS_BETTER", "higher_is_better", "short_name"]

# Metrics whose larger values are better; every other logged metric (FID, KID, W2, losses, NLL) is better lower.
HIGHER_IS_BETTER = ("inception_score", "accuracy", "precision", "recall")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of the logged ``metric`` is better, e.g. ``val/precision_digits-lenet_n1000_ddim50``."""
    return any(word in metric for word in HIGHER_IS_BETTER)


def short_name(name: str) -> str:
    """``val/fid_digits-lenet_n1000_ddim50`` -> ``fid``: a metric's key in an evaluation row, where the extractor,
    sample count and sampler settings are columns of their own. A reference split other than train stays in the
    key: ``val/fid_digits-lenet_n1000_ddim10-eta0.5_refval`` -> ``fid_refval``; ``val/kid_..._refval_std`` ->
    ``kid_refval_std``. (``inception_score_digits-lenet_...`` -> ``inception_score``: the lookbehind keeps the
    extractor part from starting inside the metric's own name.)"""
    return re.sub(r"^val/|(?<!inception)_[a-z_]+-lenet|_inception|_n\d+_[a-z0-9][a-z0-9.+-]*(?=_|$)", "", name)
