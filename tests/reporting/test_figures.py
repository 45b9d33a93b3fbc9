"""vs_<key>_<metric>.png: a log x axis, ticks labelled with the values swept, for keys spanning a factor of 20 or
more (sampler.steps 10..1000); a linear one otherwise. groups_<metric>.png: one bar per group where no curve or
vs_ figure shows the metric."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from fake_sweeps import assert_png

from difflab.reporting.figures import draw_figures, group_axes, log_axis, sweep_axes, sweep_figure
from difflab.reporting.grouping import group_jobs
from difflab.reporting.jobs import Job


def jobs_over(key: str, values: list[float]) -> list[Job]:
    """Two finished evaluation jobs (seeds) per value of ``key``, val/two_d = 1/value (+ a seed offset)."""
    return [Job(path=Path(f"/s/{i}"), task="evaluate", status="finished", step=1, error=None,
                overrides={key: f"{v:g}", "seed": str(seed)}, results={"val/two_d": 1 / (v + 1) + 0.01 * seed})
            for i, (v, seed) in enumerate((v, s) for v in values for s in (0, 1))]


@pytest.mark.parametrize(("key", "values", "scale"), [
    ("sampler.steps", [10, 20, 50, 100, 200, 500, 1000], "log"),
    ("sampler.steps", [5, 100], "log"),              # a factor of exactly 20
    ("sampler.steps", [10, 20, 40, 100], "linear"),  # a factor of 10
    ("sampler.eta", [0, 0.5, 1], "linear"),          # 0 cannot be drawn on a log axis
])
def test_the_x_axis_is_logarithmic_for_values_spanning_a_factor_of_20(key, values, scale):
    fig, ax = sweep_axes("val/two_d", key, jobs_over(key, values), [key])
    try:
        assert ax.get_xscale() == scale
        if scale == "log":
            assert list(ax.get_xticks()) == values
            assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:g}" for v in values]
            assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))  # no 2x10^1-style labels
            assert ax.get_xlabel() == f"{key} (log scale)"
        else:
            assert ax.get_xlabel() == key
        (line,) = ax.lines[:1]
        assert list(line.get_xdata()) == values  # every value drawn
    finally:
        plt.close(fig)


def test_log_axis_rule():
    assert log_axis([10, 1000]) and log_axis([1, 20]) and not log_axis([1, 19.9])
    assert not log_axis([0, 10, 1000]) and not log_axis([-1, 100]) and not log_axis([])


def test_the_saved_figure_closes_its_axes(tmp_path):
    before = plt.get_fignums()
    path = sweep_figure(tmp_path / "vs.png", "val/two_d", "sampler.steps", jobs_over("sampler.steps", [10, 1000]),
                        ["sampler.steps"])
    assert path == tmp_path / "vs.png" and plt.get_fignums() == before
    assert_png(path)


def test_groups_that_differ_by_name_get_one_bar_each_at_their_mean(tmp_path):
    values = {"eps": [0.1, 0.2, 0.3], "x0": [0.5, 0.7], "v": [0.2]}
    jobs = [Job(path=Path(f"/s/{name}{i}"), task="evaluate", status="finished", step=1, error=None,
                overrides={"objective": name, "seed": str(i)}, results={"val/fid": v})
            for name, vs in values.items() for i, v in enumerate(vs)]
    groups = group_jobs(jobs, ["objective"])
    fig, ax = group_axes("val/fid", groups, ["objective"])
    try:
        assert [bar.get_height() for bar in ax.patches] == pytest.approx([statistics.fmean(v) for v in values.values()])
        labels = [f"objective={k}\n(n={len(v)})" for k, v in values.items()]
        assert [t.get_text() for t in ax.get_xticklabels()] == labels
        dots = [list(line.get_ydata()) for line in ax.lines if line.get_marker() == "o"]
        assert dots == list(values.values())
    finally:
        plt.close(fig)
    written = draw_figures(tmp_path, jobs, groups, ["objective"], ["val/fid"], numeric=[])
    assert [p.name for p in written] == ["groups_val-fid.png"]
    assert_png(written[0])
    stepped = [Job(path=j.path, task="evaluate", status="finished", step=1, error=None,
                   overrides={**j.overrides, "sampler.steps": str(10 * (k % 2 + 1))}, results=j.results)
               for k, j in enumerate(jobs)]
    shown = draw_figures(tmp_path, stepped, group_jobs(stepped, ["objective", "sampler.steps"]),
                         ["objective", "sampler.steps"], ["val/fid"], numeric=["sampler.steps"])
    assert [p.name for p in shown] == ["vs_sampler.steps_val-fid.png"]  # shown against steps: no bars
