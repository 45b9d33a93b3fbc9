"""experiments/moons_ten_steps end to end at tiny settings: the preset's sweep, the committed-runs copy, the report
with its paired comparisons, and the study's own figures."""

from __future__ import annotations

import csv
import json

from conftest import REPO_ROOT, compose_config, run_cli
from study_scripts import load_script

from difflab.report import report

STUDY = REPO_ROOT / "experiments" / "moons_ten_steps"
TINY = ["trainer.max_steps=6", "trainer.val_check_interval=3", "evaluation.every_n_steps=3",
        "callbacks.model_checkpoint.every_n_train_steps=6", "callbacks.sample_grid.every_n_steps=6",
        "callbacks.sample_grid.num_samples=50", "dataset.num_samples=1000", "metrics.two_d.num_samples=100",
        "dataset.batch_size=64", "seed=0,1", "schedule=ten_steps/polynomial,ten_steps/linear"]



def test_the_study_runs_end_to_end_at_tiny_settings(tmp_path, hydra_cleanup):
    sweep = tmp_path / "sweep"
    done = run_cli("train", "-m", "experiment=moons_ten_steps", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 8  # 2 schedules x 2 scalings x 2 seeds
    statuses = [json.loads((job / "status.json").read_text()) for job in jobs]
    assert {s["status"] for s in statuses} == {"finished"}
    # the W2 of both scalings is measured in the box space: the standardised runs' held-out points match the box ones
    names = {name for s in statuses for name in s["metrics"] if name.startswith("val/two_d")}
    assert names == {"val/two_d_n100_ddpm10"}

    collect = load_script(REPO_ROOT / "experiments" / "collect_runs.py", "collect_runs")
    copied = tmp_path / "study" / "runs" / "train"
    assert collect.collect(sweep, copied) == 8
    assert not list(copied.rglob("*.ckpt")) and (copied / "0" / "status.json").is_file()

    out = tmp_path / "study"
    report(compose_config("report", [f"sweeps={copied}", "select=[val/two_d*]", "paired_by=seed", f"out_dir={out}",
                                     "name=results"], tmp_path))
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 8
    paired = list(csv.DictReader(open(out / "paired.csv")))
    # one-key differences: the schedule pair at each scaling, the scaling pair at each schedule
    assert sorted((r["key"], r["others"]) for r in paired) == sorted(
        [("schedule", "dataset.scaling=box"), ("schedule", "dataset.scaling=standardize"),
         ("dataset.scaling", "schedule=ten_steps/polynomial"), ("dataset.scaling", "schedule=ten_steps/linear")])
    assert {r["n"] for r in paired} == {"2"}
    assert list(out.glob("curve_*.png"))

    figures = load_script(STUDY / "figures.py", "moons_figures")
    written = figures.draw(sweep, tmp_path / "figures")
    assert sorted(p.name for p in written) == ["field_linear.png", "field_polynomial.png", "schedules.png"]


def test_the_committed_tables_regenerate_from_the_committed_runs(tmp_path):
    """results.csv and paired.csv of experiments/moons_ten_steps come from its runs/ alone (no checkpoints)."""
    import shutil

    shutil.copytree(STUDY / "runs", tmp_path / "runs")
    done = run_cli("report", f"sweeps={tmp_path / 'runs' / 'train'}", "select=[val/two_d*]", "paired_by=seed",
                   "name=results", f"out_dir={tmp_path}", "figures=false", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("results.csv", "paired.csv"):
        assert (tmp_path / name).read_text() == (STUDY / name).read_text(), name
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 60 and {r["status"] for r in rows} == {"finished"}
