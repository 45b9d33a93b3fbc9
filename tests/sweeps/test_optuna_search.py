"""hparams_search=moons_optuna: trials return the best scored value of their run; the same command run again
continues the study kept in SQLite."""

from __future__ import annotations

import csv
import math

import optuna
import pytest
import yaml
from cli_driver import run_commands
from conftest import compose_config, run_cli
from sweep_settings import METRIC, ONE_THREAD, TINY, job_dirs, scored, status

from difflab.report import report

STUDY = "moons_optuna"


def search(tmp_path, n_trials: int, *extra: str):
    result = run_cli("train", "--multirun", *TINY, f"hparams_search={STUDY}", f"hydra.sweeper.n_trials={n_trials}",
                     *extra, cwd=tmp_path, env=ONE_THREAD, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def csv_values(job, metric: str) -> list[float]:
    """``metric`` as Lightning's CSV logger wrote it (rows are sparse: only some columns filled)."""
    with open(job / "csv" / "metrics.csv") as handle:
        return [float(row[metric]) for row in csv.DictReader(handle) if row.get(metric)]


@pytest.mark.slow  # ~35 s: two searches, three trials and the report
def test_a_search_continues_its_study_and_trials_return_their_best_value(tmp_path, hydra_cleanup):
    """Default-run guard: test_diverged_trials_return_inf_and_a_search_run_again_continues_its_study (the best value:
    test_launchers_unit.py::test_a_trial_returns_the_best_scored_value_not_the_last)."""
    search(tmp_path, 2)
    search(tmp_path, 1)
    study_dir = tmp_path / "outputs" / "train" / "hparams_search" / STUDY
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{study_dir / 'optuna.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    runs = sorted(p for p in study_dir.iterdir() if p.is_dir())
    assert len(runs) == 2  # one sweep directory per run of the command
    jobs = job_dirs(runs[0]) + job_dirs(runs[1])
    assert len(jobs) == 3
    for trial, job in zip(trials, jobs):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert f"optim.optimizer.lr={trial.params['optim.optimizer.lr']}" in overrides
        assert status(job)["status"] == "finished"
        history = scored(job)
        assert len(history) == 2
        assert trial.value == min(history)  # the best value of the run, not the last
        assert trial.value == pytest.approx(min(csv_values(job, METRIC)), rel=1e-6)

    report(compose_config("report", [f"sweeps={study_dir}", "figures=false"], tmp_path))  # the study's folder of sweeps
    with open(study_dir / "report.csv") as handle:
        rows = {row["job"]: row for row in csv.DictReader(handle)}
    assert len(rows) == 3 and {row["status"] for row in rows.values()} == {"finished"}
    best = sorted(float(row[f"{METRIC}/best"]) for row in rows.values())
    assert best == pytest.approx(sorted(t.value for t in trials), rel=1e-9)


def test_diverged_trials_return_inf_and_a_search_run_again_continues_its_study(tmp_path):
    """A search of two trials that both diverge goes on to its end, each trial returning inf to the sweeper; the
    same command again (one trial; both commands in one process, cli_driver.py, each given its sweep directory) adds
    trial 2 to the same study."""
    study_dir = tmp_path / "outputs" / "train" / "hparams_search" / STUDY
    command = ["train", "--multirun", *TINY, f"hparams_search={STUDY}", "optim.optimizer.lr=1e30",
               f"hydra.sweeper.study_name={STUDY}_diverged"]
    runs = {study_dir / "first": 2, study_dir / "second": 1}  # sweep directory: trials
    results = run_commands([[*command, f"hydra.sweeper.n_trials={n}", f"hydra.sweep.dir={run}"]
                            for run, n in runs.items()], tmp_path, env=ONE_THREAD)
    for result, (run, n) in zip(results, runs.items()):
        assert result.returncode == 0, result.stderr[-3000:]
        lines = [line for line in (result.stdout + result.stderr).splitlines() if "trial diverged" in line]
        assert len(lines) == n and all(f"{METRIC} = inf returned to the sweeper" in line for line in lines), lines
        jobs = job_dirs(run)
        assert len(jobs) == n
        for job in jobs:
            record = status(job)
            assert record["status"] == "failed" and "the training loss is" in record["error"]
    study = optuna.load_study(study_name=f"{STUDY}_diverged", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    assert [(t.number, t.value) for t in study.trials] == [(0, math.inf), (1, math.inf), (2, math.inf)]


def test_a_trial_can_optimize_the_validation_loss_read_from_its_csv_log(tmp_path):
    search(tmp_path, 1, "optimized_metric=val/loss", "trainer.val_check_interval=10",
           f"hydra.sweeper.study_name={STUDY}_val_loss")
    study_dir = tmp_path / "outputs" / "train" / "hparams_search" / STUDY
    study = optuna.load_study(study_name=f"{STUDY}_val_loss", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    (trial,) = study.trials
    (run,) = [p for p in study_dir.iterdir() if p.is_dir()]
    (job,) = job_dirs(run)
    losses = csv_values(job, "val/loss")
    assert len(losses) == 2  # validated at steps 10 and 20
    assert trial.value == pytest.approx(min(losses), rel=1e-9)
