"""Paired comparisons (``paired_by=seed``): is the difference between two settings bigger than the seed noise?

Every two groups that differ in exactly one group key are compared: their finished jobs are matched by their value
of ``paired_by`` (``seed``: the same seed trained under both settings; ``ckpt_path`` or ``train.seed``: the same
checkpoint evaluated under both), jobs without a partner are left out and counted, and the per-pair differences
B − A of a metric's final value (and best value) are summarised and tested: mean ± sample std, how many pairs have
B < A, the two-sided paired t-test (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test
(``scipy.stats.wilcoxon``). A side with several jobs of one ``paired_by`` value (two sweeps of the same seeds, or
several sampling seeds of one checkpoint) contributes their mean, and the note says so. The tables:
:mod:`~difflab.reporting.paired_table`.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from difflab.errors import ConfigError
from difflab.reporting.grouping import Group
from difflab.reporting.jobs import Job
from difflab.reporting.origin import TRAIN_PREFIX

__all__ = ["PairedStats", "Comparison", "KINDS", "paired_key", "default_group_keys", "check_not_grouped",
           "paired_stats", "compare"]

KINDS = ("final", "best")


def paired_key(value: Any, jobs: list[Job], swept: list[str]) -> str | None:
    """The ``paired_by`` option checked: None (off) or one key some job sets.

    Raises:
        ConfigError: not a single key name, or a key no job sets (naming the swept keys).
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"paired_by={value!r} is not accepted; give one key, e.g. paired_by=seed "
                          f"(swept keys: {', '.join(swept) or 'none'}), or null for no paired comparisons")
    if all(job.setting(value) is None for job in jobs):
        raise ConfigError(f"paired_by: {value} is set by none of the {len(jobs)} jobs; "
                          f"swept keys: {', '.join(swept) or 'none'}")
    return value


def _checkpoint_key(key: str) -> bool:
    return key == "ckpt_path" or key.startswith(TRAIN_PREFIX)


def default_group_keys(swept: list[str], paired_by: str | None) -> list[str]:
    """The swept keys except ``seed`` and ``paired_by``; pairing by a checkpoint (``ckpt_path`` or ``train.<key>``)
    leaves out every checkpoint key, so that the groups hold the checkpoints being paired."""
    out = [k for k in swept if k not in ("seed", paired_by)]
    return [k for k in out if not _checkpoint_key(k)] if paired_by and _checkpoint_key(paired_by) else out


def check_not_grouped(paired_by: str | None, keys: list[str], swept: list[str]) -> None:
    """Raises ConfigError when ``paired_by`` is a group key: the two jobs of a pair would be in different groups."""
    if paired_by is not None and paired_by in keys:
        raise ConfigError(f"paired_by: {paired_by} is also in group_by=[{','.join(keys)}]; pair by a key the groups "
                          f"share (the seeds), e.g. group_by=[{','.join(k for k in keys if k != paired_by)}] "
                          f"paired_by={paired_by}; swept keys: {', '.join(swept) or 'none'}")


@dataclass
class PairedStats:
    """The per-pair differences B − A of one value (final or best) of a metric, and the tests of them."""

    n: int
    diff_mean: float | None
    diff_std: float | None          # sample std (ddof=1); None for n < 2
    mean_a: float | None
    mean_b: float | None
    b_lower: int                    # pairs with B < A
    p_ttest: float | None           # None: no test (the note says why)
    p_wilcoxon: float | None
    note: str


def paired_stats(a: list[float], b: list[float]) -> PairedStats:
    """Summarise and test the differences ``b[i] - a[i]``; no test (p None, a note) for n < 2, differences that are
    all 0 or not finite, and no t-test when they are all equal (no spread)."""
    from scipy import stats

    diffs = [y - x for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    if n == 0:
        return PairedStats(0, None, None, None, None, 0, None, None, "no matched pair")
    finite = all(map(math.isfinite, diffs))
    std = statistics.stdev(diffs) if n > 1 and finite else None
    summary = dict(n=n, diff_mean=statistics.fmean(diffs), diff_std=std, mean_a=statistics.fmean(a),
                   mean_b=statistics.fmean(b), b_lower=sum(d < 0 for d in diffs))
    reason = ("n < 2" if n < 2 else "a value is not finite" if not finite
              else "all differences are 0" if not any(diffs) else None)
    if reason:
        return PairedStats(**summary, p_ttest=None, p_wilcoxon=None, note=f"{reason}: no test")
    notes = []
    with warnings.catch_warnings():  # degenerate inputs are noted below, not warned about
        warnings.simplefilter("ignore")
        p_t = float(stats.ttest_rel(b, a).pvalue) if std else None
        p_w = float(stats.wilcoxon(diffs).pvalue)
    if p_t is None:
        notes.append("all differences equal: no t-test")
    if zeros := diffs.count(0.0):
        notes.append(f"Wilcoxon leaves out {zeros} zero difference{'s' if zeros > 1 else ''}")
    return PairedStats(**summary, p_ttest=p_t, p_wilcoxon=p_w, note="; ".join(notes))


@dataclass
class Comparison:
    """Two groups differing in one key, matched by ``paired_by``, for one metric (A: the group listed first)."""

    metric: str
    key: str
    a: str | None
    b: str | None
    others: str                      # the other group keys' settings, ``key=value, ...``
    paired_by: str
    matched: list[str]               # the paired_by values found on both sides
    unmatched_a: int                 # finished jobs with the metric and no partner
    unmatched_b: int
    averaged: int                    # paired_by values whose side held several jobs (their mean taken)
    stats: dict[str, PairedStats]    # final, best


def _sides(group: Group, metric: str, paired_by: str) -> dict[str | None, list[Job]]:
    out: dict[str | None, list[Job]] = {}
    for job in group.finished:
        if job.last(metric) is not None:
            out.setdefault(job.setting(paired_by), []).append(job)
    return out


def _mean(jobs: list[Job], value: Callable[[Job], float | None]) -> float:
    return statistics.fmean(v for v in map(value, jobs) if v is not None)


def _natural(text: str) -> tuple[int, float | str]:
    try:
        return 0, float(text)
    except ValueError:
        return 1, text


def _compare(metric: str, a: Group, b: Group, index: int, keys: list[str], paired_by: str) -> Comparison:
    side_a, side_b = _sides(a, metric, paired_by), _sides(b, metric, paired_by)
    matched = sorted((v for v in side_a if v is not None and v in side_b), key=_natural)
    stats = {}
    for kind in KINDS:
        value = (lambda job: job.last(metric)) if kind == "final" else (lambda job: job.best(metric))
        stats[kind] = paired_stats([_mean(side_a[v], value) for v in matched],
                                   [_mean(side_b[v], value) for v in matched])
    averaged = sum(len(side_a[v]) > 1 or len(side_b[v]) > 1 for v in matched)
    others = ", ".join(f"{k}={v}" for i, (k, v) in enumerate(zip(keys, a.values)) if i != index and v is not None)
    return Comparison(metric=metric, key=keys[index], a=a.values[index], b=b.values[index], others=others,
                      paired_by=paired_by, matched=matched,
                      unmatched_a=sum(len(jobs) for v, jobs in side_a.items() if v not in matched),
                      unmatched_b=sum(len(jobs) for v, jobs in side_b.items() if v not in matched),
                      averaged=averaged, stats=stats)


def compare(groups: list[Group], keys: list[str], metrics: list[str], paired_by: str) -> list[Comparison]:
    """Every comparison of two groups differing in exactly one of ``keys``, for each metric: ordered by metric, then
    by the key compared, then by the other keys' settings (as the groups appear), A before B as the groups appear."""
    pairs = []
    for (i, a), (j, b) in combinations(enumerate(groups), 2):
        differ = [k for k in range(len(keys)) if a.values[k] != b.values[k]]
        if len(differ) == 1:
            rest = tuple(v for k, v in enumerate(a.values) if k != differ[0])
            pairs.append((differ[0], rest, i, j))
    first: dict[tuple[int, tuple], int] = {}
    for index, rest, i, _ in pairs:
        first.setdefault((index, rest), i)
    pairs.sort(key=lambda p: (p[0], first[(p[0], p[1])], p[2], p[3]))
    return [_compare(metric, groups[i], groups[j], index, keys, paired_by)
            for metric in metrics for index, _, i, j in pairs]
