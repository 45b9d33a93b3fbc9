"""A sweep logged to W&B (offline): one run per job, grouped, named by its overrides, holding only its own job's
history, config, images and final summary. The offline run files are read back and compared with each job's own
``csv/metrics.csv`` and ``evaluation.json``."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
from conftest import run_cli
from wandb_records import OfflineRun, read_finished_run

SCHEDULES = ["linear", "cosine", "sigmoid"]
TINY = ["experiment=moons", "trainer.max_steps=20", "trainer.val_check_interval=10", "trainer.log_every_n_steps=5",
        "evaluation.every_n_steps=10", "dataset.num_samples=2000", "metrics.two_d.num_samples=200",
        "callbacks.sample_grid.every_n_steps=10", "callbacks.sample_grid.num_samples=16", "sampler.steps=5",
        "callbacks.model_checkpoint.every_n_train_steps=20", "callbacks.rich_progress_bar=null"]
TWO_D = "val/two_d_n200_dpmpp2m20"


def csv_values(job: Path) -> dict[tuple[int, str], float]:
    """{(step, metric): value} of every filled cell of the job's Lightning CSV."""
    with open(job / "csv" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    return {(int(row["step"]), key): float(value) for row in rows for key, value in row.items()
            if key not in ("step", "epoch") and value != ""}


def wandb_values(run: OfflineRun) -> dict[tuple[int, str], float]:
    """{(step, metric): value} of every train/ and val/ number in the run's history."""
    return {(int(row["trainer/global_step"]), key): float(value) for row in run.history for key, value in row.items()
            if key.startswith(("train/", "val/")) and isinstance(value, (int, float))}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wandb_sweep")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb_home"), "WANDB_CONFIG_DIR": str(root / "wandb_cfg"),
           "WANDB_CACHE_DIR": str(root / "wandb_cache"), "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_TAGS"):
        os.environ.pop(key, None)  # run_cli passes os.environ on; nothing may send the runs anywhere
    result = run_cli("train", "--multirun", *TINY, "logger=[csv,wandb]", f"schedule={','.join(SCHEDULES)}",
                     cwd=root, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "There is a wandb run already in progress" not in result.stderr
    (saved,) = (root / "outputs").rglob("multirun.yaml")  # where experiment=moons puts its sweeps
    return saved.parent


def job_run(sweep: Path, job: int) -> tuple[Path, OfflineRun]:
    files = list((sweep / str(job) / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files  # exactly one run per job
    return files[0].parent, read_finished_run(files[0])


def test_every_job_has_a_run_of_its_own_in_the_sweeps_group(sweep):
    runs = [job_run(sweep, job)[1] for job in range(len(SCHEDULES))]
    assert len({run.run_id for run in runs}) == 3
    for schedule, run in zip(SCHEDULES, runs):
        outputs = next(p for p in sweep.parents if p.name == "outputs")  # paths.log_dir
        assert run.group == sweep.relative_to(outputs).as_posix()  # e.g. train/sweeps/moons
        assert run.job_type == "train"
        assert run.name == f"schedule={schedule}"  # the swept override only, not the fixed tiny settings
        assert run.tags == [f"schedule={schedule}"]
        assert run.config["schedule"]["name"] == schedule
        assert run.config["seed"] == 0 and run.config["trainer"]["max_steps"] == 20
        assert run.exit_code == 0


@pytest.mark.parametrize("job", range(len(SCHEDULES)))
def test_a_runs_history_and_images_are_its_own_jobs(sweep, job):
    run_dir, run = job_run(sweep, job)
    logged, written = wandb_values(run), csv_values(sweep / str(job))
    assert {key for _, key in logged} >= {TWO_D, "val/loss", "train/loss"}
    assert logged.keys() == {k for k in written if k[1].startswith(("train/", "val/"))}  # no other job's rows
    for key, value in logged.items():
        assert math.isclose(value, written[key], rel_tol=1e-6), key
    grids = [row["samples/grid"] for row in run.history if "samples/grid" in row]
    assert {row["trainer/global_step"] for row in run.history if "samples/grid" in row} == {10, 20}
    assert all(g["_type"] == "images/separated" and g["count"] == 1 for g in grids)
    for grid in grids:
        (name,) = grid["filenames"]
        assert name.startswith("media/images/samples/") and (run_dir / "files" / name).stat().st_size > 0


@pytest.mark.parametrize("job", range(len(SCHEDULES)))
def test_the_summary_holds_the_last_and_best_of_each_metric(sweep, job):
    _, run = job_run(sweep, job)
    history = json.loads((sweep / str(job) / "evaluation.json").read_text())["history"]
    scores = [values[TWO_D] for _, values in sorted(history, key=lambda item: item[0])]
    assert len(scores) == 2
    assert run.summary[TWO_D] == pytest.approx(scores[-1], rel=1e-9)
    assert run.summary[f"best/{TWO_D}"] == pytest.approx(min(scores), rel=1e-9)
    losses = [v for (step, key), v in sorted(csv_values(sweep / str(job)).items()) if key == "val/loss"]
    assert run.summary["val/loss"] == pytest.approx(losses[-1], rel=1e-6)
    assert run.summary["best/val/loss"] == pytest.approx(min(losses), rel=1e-6)


def test_an_evaluation_sweep_logs_one_evaluate_run_per_job(sweep, tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_home"), "WANDB_SILENT": "true",
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb_cfg"), "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
           "OMP_NUM_THREADS": "1"}
    evaluations = tmp_path / "evaluations"
    result = run_cli("evaluate", "--multirun", f"ckpt_path={sweep / '0' / 'checkpoints' / 'last.ckpt'}",
                     "metrics=[two_d]", "metrics.two_d.num_samples=200", "sampler=ddpm,ddim", "logger=wandb",
                     f"hydra.sweep.dir={evaluations}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for job, (sampler, steps) in enumerate((("ddpm", 1000), ("ddim", 50))):  # ddpm: T steps, from the checkpoint
        (row,) = json.loads((evaluations / str(job) / "results.json").read_text())
        (file,) = (evaluations / str(job) / "wandb").glob("offline-run-*/run-*.wandb")
        run = read_finished_run(file)
        assert (run.job_type, run.name, run.exit_code) == ("evaluate", f"sampler={sampler}", 0)
        assert run.group == evaluations.name and run.config["sampler"]["steps"] == steps
        (name,) = json.loads(row["metric_names"])
        assert run.summary[name] == pytest.approx(row["two_d"], rel=1e-9)
