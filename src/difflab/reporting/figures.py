"""The report's figures (PNG, matplotlib's Agg backend, no display needed), from the finished jobs only:

- ``curve_<metric>.png``: the metric against the training step, one line per group (the mean over its seeds at
  each step), the seeds' min..max shaded;
- ``vs_<key>_<metric>.png``: the metric's final value against a numeric swept key, one line per setting of the
  other group keys, mean ± sample std (ddof=1) over the jobs at each value (the seeds) as error bars; a log x
  axis, ticks labelled with the values swept, when they are positive and span a factor of 20 or more (steps, NFE);
- ``groups_<metric>.png``: when neither of those shows a metric (groups that differ in names only, e.g. the
  objective), its final value per group as a bar, mean ± sample std over the group's jobs, each job a dot.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)
from matplotlib.ticker import NullFormatter  # noqa: E402

from difflab.reporting.grouping import Group, label  # noqa: E402
from difflab.reporting.jobs import FINISHED, Job  # noqa: E402

__all__ = ["figure_name", "curve_figure", "sweep_axes", "sweep_figure", "group_axes", "group_figure", "draw_figures",
           "log_axis", "LOG_SPAN"]

LOG_SPAN = 20  # a numeric key whose positive values span this factor or more is drawn on a log axis


def figure_name(prefix: str, *parts: str) -> str:
    """A file name from metric and key names: ``/`` -> ``-``, anything else unusual -> ``_``
    (``curve``, ``val/two_d_n1000_dpmpp2m20`` -> ``curve_val-two_d_n1000_dpmpp2m20.png``)."""
    clean = [re.sub(r"[^A-Za-z0-9._=-]+", "_", part.replace("/", "-")) for part in parts]
    return "_".join([prefix, *clean]) + ".png"


def _legend(ax: plt.Axes, lines: int) -> None:
    """Inside the axes for a few lines, beside them for many."""
    if lines <= 6:
        ax.legend(fontsize=8)
    else:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def curve_figure(path: Path, metric: str, groups: list[Group], keys: list[str]) -> Path | None:
    """``metric`` against the step for each group: mean over its finished seeds, min..max shaded; None when no
    finished job logged the metric at two steps or more."""
    lines = []
    for group in groups:
        runs = [job.series[metric] for job in group.finished if len(job.series.get(metric, {})) > 0]
        steps = sorted({s for points in runs for s in points})
        if not runs or len(steps) < 2:
            continue
        at = [[points[s] for points in runs if s in points] for s in steps]
        lines.append((f"{label(keys, group.values)} (n={len(runs)})", steps, at))
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, steps, at in lines:
        means = [statistics.fmean(v) for v in at]
        (line,) = ax.plot(steps, means, label=name, marker="o" if len(steps) <= 20 else None, markersize=3)
        ax.fill_between(steps, [min(v) for v in at], [max(v) for v in at], color=line.get_color(), alpha=0.2,
                        linewidth=0)
    ax.set(xlabel="training step", ylabel=metric,
           title=f"{metric}\nline: mean over seeds; shaded: min..max over seeds (finished jobs)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    _legend(ax, len(lines))
    return _save(fig, path)


def log_axis(values: list[float]) -> bool:
    """Whether ``values`` (a swept key's settings) read better on a log axis: all positive, spanning a factor of
    :data:`LOG_SPAN` or more (``sampler.steps`` over 10..1000)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= LOG_SPAN


def sweep_axes(metric: str, key: str, jobs: list[Job], keys: list[str]) -> tuple[plt.Figure, plt.Axes] | None:
    """The figure of :func:`sweep_figure`, not saved (the caller closes it); None when there is nothing to draw.

    The x axis is logarithmic when :func:`log_axis` says so, its ticks labelled with the values swept."""
    others = [k for k in keys if k != key]
    points: dict[tuple[str | None, ...], dict[float, list[float]]] = {}
    for job in jobs:
        value, x = job.last(metric), job.setting(key)
        if job.status != FINISHED or value is None or x is None:
            continue
        points.setdefault(tuple(job.setting(k) for k in others), {}).setdefault(float(x), []).append(value)
    if not any(len(by_x) >= 2 for by_x in points.values()):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for line, by_x in points.items():
        xs = sorted(by_x)
        means = [statistics.fmean(by_x[x]) for x in xs]
        stds = [statistics.stdev(by_x[x]) if len(by_x[x]) > 1 else 0.0 for x in xs]
        counts = [len(by_x[x]) for x in xs]
        n = str(min(counts)) if min(counts) == max(counts) else f"{min(counts)}..{max(counts)}"
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=f"{label(others, line)} (n={n})")
    ax.set(xlabel=key, ylabel=f"{metric} (final)",
           title=f"{metric} (final value) vs {key}\nmean ± sample std over the finished jobs at each value (seeds)")
    values = sorted({x for by_x in points.values() for x in by_x})
    if log_axis(values):
        ax.set_xscale("log")
        ax.set_xticks(values, [f"{x:g}" for x in values])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{key} (log scale)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    _legend(ax, len(points))
    return fig, ax


def sweep_figure(path: Path, metric: str, key: str, jobs: list[Job], keys: list[str]) -> Path | None:
    """The final value of ``metric`` against the numeric ``key``: one line per setting of the other ``keys``,
    mean ± sample std (ddof=1) over the finished jobs at each value; None when there is nothing to draw."""
    drawn = sweep_axes(metric, key, jobs, keys)
    return _save(drawn[0], path) if drawn else None


def group_axes(metric: str, groups: list[Group], keys: list[str]) -> tuple[plt.Figure, plt.Axes] | None:
    """The figure of :func:`group_figure`, not saved (the caller closes it); None when there is nothing to draw."""
    bars = [(label(keys, group.values), values) for group in groups
            if (values := [v for job in group.finished if (v := job.last(metric)) is not None])]
    if len(bars) < 2:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(bars) + 2), 4.5))
    for i, (_, values) in enumerate(bars):
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        ax.bar(i, statistics.fmean(values), yerr=std, capsize=4, color="C0", alpha=0.6)
        ax.plot([i] * len(values), values, "o", color="k", markersize=3)
    ax.set_xticks(range(len(bars)), [f"{name}\n(n={len(values)})" for name, values in bars], fontsize=7,
                  rotation=20 if len(bars) > 4 else 0, ha="right" if len(bars) > 4 else "center")
    ax.set(ylabel=f"{metric} (final)",
           title=f"{metric} (final value) per group\nbar: mean ± sample std over the finished jobs; dots: the jobs")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, axis="y")
    return fig, ax


def group_figure(path: Path, metric: str, groups: list[Group], keys: list[str]) -> Path | None:
    """The final value of ``metric`` per group: a bar at the mean over its finished jobs, the sample std as an error
    bar, each job a dot; None with fewer than two groups that have the metric."""
    drawn = group_axes(metric, groups, keys)
    return _save(drawn[0], path) if drawn else None


def draw_figures(out_dir: Path, jobs: list[Job], groups: list[Group], keys: list[str], metrics: list[str],
                 numeric: list[str]) -> list[Path]:
    """Every curve and every metric-against-key figure that has something to show, and a per-group figure of each
    metric that neither shows; the paths written."""
    written, shown = [], set()
    for metric in metrics:
        path = curve_figure(out_dir / figure_name("curve", metric), metric, groups, keys)
        written += [path] if path else []
        shown |= {metric} if path else set()
    for key in numeric:
        for metric in metrics:
            path = sweep_figure(out_dir / figure_name("vs", key, metric), metric, key, jobs, keys)
            written += [path] if path else []
            shown |= {metric} if path else set()
    for metric in metrics:
        path = None if metric in shown else group_figure(out_dir / figure_name("groups", metric), metric, groups, keys)
        written += [path] if path else []
    return written
