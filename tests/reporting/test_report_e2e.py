"""A real 2x2 moons sweep (schedule=linear,cosine x seed=0,1) trained and reported: two groups of n=2, the values
read back from each job's own status.json and evaluation.json, the W2 curve figure."""

from __future__ import annotations

import csv
import json

from conftest import run_cli
from fake_sweeps import assert_cell, assert_png, md_table


def test_a_real_moons_sweep_end_to_end(tmp_path):
    sweep = tmp_path / "sweep"
    train = run_cli(
        "train", "--multirun", "experiment=moons", "schedule=linear,cosine", "seed=0,1", "trainer.max_steps=20",
        "trainer.val_check_interval=10", "trainer.log_every_n_steps=5", "evaluation.every_n_steps=10",
        "dataset.num_samples=2000", "metrics.two_d.num_samples=200", "sampler.steps=10",
        "callbacks.sample_grid.num_samples=16", "callbacks.rich_progress_bar=null", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path, env={"OMP_NUM_THREADS": "1"},
    )
    assert train.returncode == 0, train.stderr[-3000:]
    result = run_cli("report", f"sweeps={sweep}", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    metric = "val/two_d_n200_dpmpp2m20"
    # the truth, read here from each job's own files: status.json and evaluation.json
    truth = {}
    for job in sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir()):
        status = json.loads((job / "status.json").read_text())
        assert status["status"] == "finished" and status["step"] == 20
        history = json.loads((job / "evaluation.json").read_text())["history"]
        schedule = next(o.split("=")[1] for o in status["overrides"] if o.startswith("schedule="))
        truth[job.name] = (schedule, [values[metric] for _, values in history if metric in values])
    assert len(truth) == 4
    with open(sweep / "report.csv", newline="") as handle:
        rows = {row["job"]: row for row in csv.DictReader(handle)}
    for name, (schedule, values) in truth.items():
        assert rows[name]["schedule"] == schedule and rows[name]["status"] == "finished"
        assert float(rows[name][metric]) == values[-1] and float(rows[name][f"{metric}/best"]) == min(values)
        assert rows[name]["train/loss"] != ""
    final = md_table((sweep / "report.md").read_text(), "Final values")
    assert [row["schedule"] for row in final] == ["linear", "cosine"]
    for row in final:
        assert row["finished"] == "2 of 2"
        assert_cell(row[metric], [v[-1] for s, v in truth.values() if s == row["schedule"]])
        assert row[metric].endswith("(n=2)")
    assert_png(sweep / "curve_val-two_d_n200_dpmpp2m20.png")
    assert "curve_val-two_d_n200_dpmpp2m20.png" in result.stdout
