"""What a report compares: the swept keys, the metrics chosen, the groups of jobs (a group = one setting of the
group keys, its jobs = the seeds) and the mean ± sample std of a metric over a group's finished jobs."""

from __future__ import annotations

import fnmatch
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from difflab.errors import ConfigError
from difflab.reporting.jobs import FINISHED, Job
from difflab.reporting.origin import TRAIN_PREFIX
from difflab.sweeps.overrides import is_plumbing

__all__ = ["Group", "Summary", "swept_keys", "numeric_keys", "choose_metrics", "group_jobs",
           "summarise", "label", "TRAIN_SEED"]

TRAIN_SEED = f"{TRAIN_PREFIX}seed"  # the seed of the training run that made an evaluation job's checkpoint


def swept_keys(jobs: list[Job], extra: list[str] = ()) -> list[str]:
    """The override keys whose values differ between ``jobs`` (Hydra's settings, loggers and ``resume`` never count:
    :func:`~difflab.sweeps.overrides.is_plumbing`; ``ckpt_path`` counts in evaluation jobs, the checkpoint they
    score, not in training jobs, where it resumes a run), in the order they were typed, then the keys of ``extra``
    not among them. When evaluation jobs score several checkpoints, ``train.seed`` (the seed of the training run
    that made each checkpoint, when its run directory is found) follows ``ckpt_path``, mapping one onto the other."""
    evaluations = any(job.task == "evaluate" for job in jobs)
    keys = [k for k in dict.fromkeys(k for job in jobs for k in job.overrides)
            if not is_plumbing(k) and (k != "ckpt_path" or evaluations)]
    swept = [k for k in keys if len({job.setting(k) for job in jobs}) > 1]
    if "ckpt_path" in swept and TRAIN_SEED not in swept and any(job.setting(TRAIN_SEED) is not None for job in jobs):
        swept.insert(swept.index("ckpt_path") + 1, TRAIN_SEED)
    return swept + [k for k in extra if k not in swept]


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def numeric_keys(jobs: list[Job], keys: list[str]) -> list[str]:
    """The keys whose values are numbers in every job that sets them, with at least two distinct values."""
    out = []
    for key in keys:
        values = [job.setting(key) for job in jobs]
        numbers = {_number(v) for v in values if v is not None}
        if values and None not in numbers and len(numbers) >= 2:
            out.append(key)
    return out


def choose_metrics(jobs: list[Job], patterns: list[str]) -> tuple[list[str], list[str]]:
    """The logged metrics matched by ``patterns`` (names or globs, e.g. ``val/*``), in the patterns' order, and the
    patterns that matched nothing.

    Raises:
        ConfigError: something was logged but no pattern matches any of it (naming what was logged).
    """
    logged = sorted({name for job in jobs for name in job.metric_names})
    chosen: dict[str, None] = {}
    unmatched = []
    for pattern in patterns:
        matches = [name for name in logged if fnmatch.fnmatchcase(name, pattern)]
        chosen.update(dict.fromkeys(matches))
        if not matches:
            unmatched.append(pattern)
    if logged and not chosen:
        raise ConfigError(f"select=[{','.join(patterns)}] matches none of the logged metrics; choose names or patterns "
                          f"among: {', '.join(logged)}")
    return list(chosen), unmatched


@dataclass
class Group:
    """The jobs sharing one setting of the group keys."""

    values: tuple[str | None, ...]
    jobs: list[Job]

    @property
    def finished(self) -> list[Job]:
        return [job for job in self.jobs if job.status == FINISHED]


def group_jobs(jobs: list[Job], keys: list[str]) -> list[Group]:
    """Jobs grouped by their values of ``keys``, groups in the order their first job appears."""
    groups: dict[tuple[str | None, ...], Group] = {}
    for job in jobs:
        values = tuple(job.setting(k) for k in keys)
        groups.setdefault(values, Group(values, [])).jobs.append(job)
    return list(groups.values())


def label(keys: list[str], values: tuple[str | None, ...]) -> str:
    """``schedule=cosine, schedule.num_timesteps=100`` (keys a job does not set left out); ``all jobs`` without."""
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values) if v is not None) or "all jobs"


@dataclass
class Summary:
    """A metric over a group's finished jobs: mean, sample std (ddof=1; None for one value) and count."""

    mean: float | None
    std: float | None
    n: int

    def __str__(self) -> str:
        if self.n == 0 or self.mean is None:
            return "-"
        if self.std is None:
            return f"{self.mean:.4g} (n=1)"
        return f"{self.mean:.4g} ± {self.std:.2g} (n={self.n})"


def summarise(jobs: list[Job], value: Callable[[Job], float | None]) -> Summary:
    """Mean ± sample std of ``value(job)`` over the ``jobs`` that have one."""
    values = [v for v in (value(job) for job in jobs) if v is not None]
    if not values:
        return Summary(None, None, 0)
    return Summary(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))
