"""The W&B identity of a job (group, name, job type, tags) from Hydra's runtime config; the W&B logger factory
and the closing of a job's runs, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra.conf import HydraConf
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger
from wandb_records import read_finished_run

from difflab.callbacks.run_summary import best_and_last
from difflab.loggers import close_loggers, make_wandb_logger
from difflab.sweeps.identity import RunIdentity, run_identity


@pytest.fixture
def hydra_job():
    """Set Hydra's runtime config as a job of ``mode`` with these task overrides would see it."""
    previous = HydraConfig.instance().cfg

    def set_job(overrides: list[str], mode: RunMode = RunMode.RUN, sweep_dir: Path | None = None,
                params: dict[str, str] | None = None, job_name: str = "train") -> None:
        cfg = OmegaConf.create({"hydra": OmegaConf.structured(HydraConf)})
        cfg.hydra.mode = mode
        cfg.hydra.overrides.task = overrides
        cfg.hydra.job.name = job_name
        cfg.hydra.job.num = 0
        cfg.hydra.sweep.dir = str(sweep_dir)
        cfg.hydra.sweeper = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                             "params": params}
        HydraConfig.instance().set_config(cfg)

    yield set_job
    HydraConfig.instance().cfg = previous


def save_sweep(sweep_dir: Path, overrides: list[str]) -> None:
    """``multirun.yaml`` as Hydra's sweeper saves it: the command line's overrides, sweeps unexpanded."""
    sweep_dir.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": overrides}}}), sweep_dir / "multirun.yaml")


def test_outside_hydra_a_run_is_named_after_its_task(hydra_job):
    HydraConfig.instance().cfg = None
    assert run_identity("evaluate") == RunIdentity(group=None, name="evaluate", job_type="evaluate", tags=())


def test_a_single_run_is_named_by_its_overrides_and_has_no_group(hydra_job):
    hydra_job([])
    assert run_identity("train") == RunIdentity(group=None, name="train", job_type="train", tags=())
    hydra_job(["schedule=cosine", "ckpt_path=/x/last.ckpt", "+seed=1", "resume=auto", "logger=wandb",
               "logger.wandb.offline=true", "hydra.verbose=true", "sampler@evaluation.sampler=ddim"])
    assert run_identity("train") == RunIdentity(
        group=None, name="schedule=cosine,+seed=1,sampler@evaluation.sampler=ddim", job_type="train",
        tags=("schedule=cosine", "+seed=1", "sampler@evaluation.sampler=ddim"))


def test_a_sweeps_jobs_share_its_group_and_are_named_by_what_they_vary(hydra_job, tmp_path):
    log_dir = tmp_path / "outputs"
    sweep = log_dir / "train" / "multiruns" / "2026-11-30_22-40-00"
    save_sweep(sweep, ["experiment=moons", "schedule=linear,cosine", "trainer.max_steps=20", "seed=range(2)",
                       "logger=wandb"])
    hydra_job(["experiment=moons", "schedule=cosine", "trainer.max_steps=20", "seed=1", "logger=wandb"],
              RunMode.MULTIRUN, sweep)
    assert run_identity("train", log_dir) == RunIdentity(
        group="train/multiruns/2026-11-30_22-40-00", name="schedule=cosine,seed=1", job_type="train",
        tags=("schedule=cosine", "seed=1"))
    # a sweep directory of the user's own, outside the log directory: its name
    assert run_identity("train", tmp_path / "elsewhere").group == "2026-11-30_22-40-00"


def test_a_swept_checkpoint_names_the_evaluation(hydra_job, tmp_path):
    save_sweep(tmp_path / "e", ["ckpt_path=a.ckpt,b.ckpt", "sampler.steps=10"])
    hydra_job(["ckpt_path=b.ckpt", "sampler.steps=10"], RunMode.MULTIRUN, tmp_path / "e", job_name="evaluate")
    assert run_identity(None, tmp_path) == RunIdentity(group="e", name="ckpt_path=b.ckpt", job_type="evaluate",
                                                       tags=("ckpt_path=b.ckpt",))


def test_keys_of_the_sweepers_params_count_as_swept(hydra_job, tmp_path):
    """An optuna search: no multirun.yaml, the varied keys are in hydra.sweeper.params."""
    hydra_job(["experiment=moons", "optim.optimizer.lr=0.0031", "seed=2"], RunMode.MULTIRUN, tmp_path / "search",
              params={"optim.optimizer.lr": "interval(1e-4, 1e-2)", "seed": "choice(1, 2)"})
    identity = run_identity("train", tmp_path)
    assert (identity.group, identity.name) == ("search", "optim.optimizer.lr=0.0031,seed=2")


def test_a_one_job_sweep_is_named_by_all_its_overrides(hydra_job, tmp_path):
    save_sweep(tmp_path / "s", ["schedule=cosine"])
    hydra_job(["schedule=cosine"], RunMode.MULTIRUN, tmp_path / "s")
    assert run_identity("train", tmp_path).name == "schedule=cosine"


def test_tags_are_cut_to_64_characters(hydra_job):
    long = "callbacks.sample_grid.dirpath=/a/very/long/directory/name/that/goes/on/and/on"
    hydra_job([long, "seed=3"])
    identity = run_identity("train")
    assert identity.name == f"{long},seed=3"
    assert identity.tags == (long[:63] + "…", "seed=3") and len(identity.tags[0]) == 64


def test_given_values_win_over_the_derived_ones(hydra_job, tmp_path):
    hydra_job(["schedule=cosine"])
    derived = make_wandb_logger(offline=True, project="p", save_dir=str(tmp_path), task_name="train")
    assert {k: derived._wandb_init[k] for k in ("name", "group", "job_type", "tags")} == {
        "name": "schedule=cosine", "group": None, "job_type": "train", "tags": ["schedule=cosine"]}
    given = make_wandb_logger(offline=True, project="p", save_dir=str(tmp_path), task_name="train", name="mine",
                              group="ablation", job_type="debug", tags=["a", "x" * 70])
    assert {k: given._wandb_init[k] for k in ("name", "group", "job_type", "tags")} == {
        "name": "mine", "group": "ablation", "job_type": "debug", "tags": ["a", "x" * 63 + "…"]}
    assert make_wandb_logger(offline=True, save_dir=str(tmp_path), group="", tags=[])._wandb_init["group"] is None


def test_best_and_last_of_a_scoring_history():
    history = [(10, {"val/fid_a": 3.0, "val/inception_score_a": 2.0}),
               (30, {"val/fid_a": 2.7, "val/inception_score_a": 1.8}),
               (20, {"val/fid_a": 2.5, "val/inception_score_a": 1.5})]
    assert best_and_last(history) == {"val/fid_a": 2.7, "best/val/fid_a": 2.5,
                                      "val/inception_score_a": 1.8, "best/val/inception_score_a": 2.0}
    assert best_and_last([]) == {}


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    yield tmp_path
    import wandb

    if wandb.run is not None:
        wandb.finish()


def run_file(logger) -> Path:
    return next(Path(logger.experiment.dir).parent.glob("run-*.wandb"))


def test_closing_ends_each_jobs_run_so_the_next_job_starts_its_own(offline_wandb):
    first = make_wandb_logger(project="p", save_dir=str(offline_wandb / "job0"))
    first.log_metrics({"val/loss": 1.0}, step=1)
    first_file = run_file(first)
    close_loggers([CSVLogger(offline_wandb), first])  # other loggers are left alone
    close_loggers([first])  # twice is harmless
    second = make_wandb_logger(project="p", save_dir=str(offline_wandb / "job1"))
    second.log_metrics({"val/loss": 2.0}, step=1)
    second_file = run_file(second)
    try:
        raise RuntimeError("the job fails")
    except RuntimeError:
        close_loggers([second])  # while the error propagates: a failed run
    first_run, second_run = read_finished_run(first_file), read_finished_run(second_file)
    assert first_run.run_id != second_run.run_id
    assert [row["val/loss"] for row in first_run.history] == [1.0]
    assert [row["val/loss"] for row in second_run.history] == [2.0]
    assert (first_run.exit_code, second_run.exit_code) == (0, 1)
    assert sys.exc_info() == (None, None, None)


def test_a_run_an_earlier_job_left_open_is_finished_before_the_next_starts(offline_wandb):
    import wandb

    first = make_wandb_logger(project="p", save_dir=str(offline_wandb / "job0"))
    first.log_metrics({"val/loss": 1.0}, step=1)  # never closed
    with pytest.warns(UserWarning, match="of an earlier job was still open; finishing it"):
        second = make_wandb_logger(project="p", save_dir=str(offline_wandb / "job1")).experiment
    assert second.id != first.experiment.id and wandb.run is second
    wandb.finish()
    user_run = wandb.init(project="p", dir=str(offline_wandb))  # a run the user started is the user's: reused
    with pytest.warns(UserWarning, match="already in progress"):
        assert make_wandb_logger(project="p", save_dir=str(offline_wandb / "job2")).experiment is user_run
