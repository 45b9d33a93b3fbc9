"""The difflab side of the launcher presets and of the search, in process: thread shares, a joblib or submitit job's
setup in its own process, the submitit sizing resolvers (for difflab-train and difflab-evaluate), the refusals, the
study storage, a requeued job's resume, and the metric a trial returns."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import submitit
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from difflab.configs import CONFIG_DIR
from difflab.errors import ConfigError
from difflab.sweeps import launchers
from difflab.sweeps.launchers import (
    THREAD_ENV_VARS,
    SweepSetup,
    launcher_kind,
    objective_refusal,
    prepare_study_storage,
    refusal,
    sweeper_refusal,
    threads_per_job,
)
from difflab.sweeps.search import Objective, search_objective
from difflab.sweeps.status import FAILED, RUNNING, write_status
from difflab.sweeps.submitit import gpus_per_node, job_processes, requeued_resume, tasks_per_node


@pytest.mark.parametrize(("n_jobs", "cores", "threads"), [
    (2, 2, 1), (2, 8, 4), (3, 8, 2), (-1, 8, 1), (-2, 8, 8 // 7), (16, 8, 1), (None, 4, 1), (1, 6, 6)])
def test_parallel_jobs_share_the_cores(n_jobs, cores, threads):
    assert threads_per_job(n_jobs, cores) == threads


def test_submitit_presets_size_a_job_from_the_trainer():
    assert gpus_per_node("gpu", 4) == 4 and tasks_per_node("gpu", 4) == 4
    assert gpus_per_node("cpu", 2) is None and tasks_per_node("cpu", 2) == 2
    assert gpus_per_node("gpu", [0, 1]) == 2
    assert gpus_per_node("cuda:1", 1) == 1 and gpus_per_node("auto", 1) == 1  # difflab-evaluate's device values
    with pytest.raises(ValueError, match=r"trainer.devices='auto'"):
        tasks_per_node("gpu", "auto")
    assert job_processes({"devices": 8, "num_nodes": 2, "accelerator": "gpu"}) == 16
    assert job_processes({"devices": "auto", "num_nodes": 1, "accelerator": "cpu"}) == 1


def hydra_config(overrides: list[str], config_name: str = "train"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm"])
def test_launcher_presets_pick_up_difflabs_settings(launcher, hydra_cleanup):
    cfg = hydra_config([f"hydra/launcher={launcher}", "trainer=gpu", "trainer.devices=2", "trainer.num_nodes=3"])
    node = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher_kind(node["_target_"]) == launcher
    if launcher == "joblib":
        assert node["n_jobs"] == -1
    else:
        assert node["submitit_folder"].endswith("/.submitit/%j") and node["gpus_per_node"] == 2
    if launcher == "submitit_slurm":  # one task per GPU on each of the trainer's nodes: Lightning's SLURM DDP
        assert (node["tasks_per_node"], node["nodes"], node["max_num_timeout"]) == (2, 3, 3)


@pytest.mark.parametrize(("launcher", "trainer", "refused"), [
    ("joblib", ["trainer=ddp_cpu"], True), ("joblib", ["trainer.num_nodes=2"], True), ("joblib", [], False),
    ("submitit_local", ["trainer=ddp_cpu"], True), ("submitit_slurm", ["trainer=ddp_cpu"], False),
    ("basic", ["trainer=ddp_cpu"], False)])
def test_a_ddp_job_is_refused_only_inside_a_launchers_worker(launcher, trainer, refused, hydra_cleanup):
    reason = refusal(hydra_config([f"hydra/launcher={launcher}", *trainer]))
    assert (reason is not None) == refused
    if refused:
        assert reason.startswith(f"hydra/launcher={launcher} runs each job in one worker process")
        assert "\n" not in reason


@pytest.mark.parametrize(("launcher", "device", "gpus"), [
    ("submitit_local", "auto", 1), ("submitit_local", "cpu", None), ("submitit_slurm", "cuda", 1),
    ("submitit_slurm", "cpu", None)])
def test_submitit_presets_size_an_evaluation_job_from_its_device(launcher, device, gpus, hydra_cleanup):
    # conf/evaluate.yaml has no trainer: one node, one task, a GPU unless device=cpu
    cfg = hydra_config([f"hydra/launcher={launcher}", "ckpt_path=/x.ckpt", f"device={device}",
                        "sampler.steps=5"], config_name="evaluate")
    assert "trainer" not in cfg
    assert refusal(cfg) is None
    node = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert node["gpus_per_node"] == gpus and node["tasks_per_node"] == 1 and node["nodes"] == 1


@pytest.fixture
def thread_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restore torch's threads and the thread variables a job's setup changes."""
    previous = torch.get_num_threads()
    for name in THREAD_ENV_VARS:
        monkeypatch.setenv(name, os.environ.get(name, "1"))
    yield
    torch.set_num_threads(previous)


def job_start(config: DictConfig, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Run the sweep callback's setup of a job as Hydra does in the job's process; its log lines."""
    with caplog.at_level(logging.INFO, logger=launchers.__name__):
        SweepSetup().on_job_start(config)
    return [r.getMessage() for r in caplog.records if r.name == launchers.__name__]


def test_a_joblib_job_takes_its_share_of_the_cores_as_threads(thread_settings, monkeypatch, caplog, hydra_cleanup):
    cfg = hydra_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    cfg.hydra.job.num = 1
    monkeypatch.setattr(launchers, "usable_cores", lambda: 8)
    assert job_start(cfg, caplog) == ["difflab: joblib job 1: n_jobs=2 on 8 cores: torch threads: 4"]
    assert torch.get_num_threads() == 4 and all(os.environ[name] == "4" for name in THREAD_ENV_VARS)


def test_a_submitit_job_links_its_logs_and_takes_its_cpus_as_threads(
        thread_settings, tmp_path, monkeypatch, caplog, hydra_cleanup):
    sweep = tmp_path / "sweep"
    job_dir, folder = sweep / "1", sweep / ".submitit" / "1234_1"  # the preset's submitit_folder, %j resolved
    job_dir.mkdir(parents=True)
    folder.mkdir(parents=True)
    cfg = hydra_config(["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=3", f"hydra.sweep.dir={sweep}"])
    cfg.hydra.job.num, cfg.hydra.runtime.output_dir = 1, str(job_dir)
    assert cfg.hydra.launcher.submitit_folder == str(sweep / ".submitit" / "%j")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")  # set by submitit in the jobs it starts
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: SimpleNamespace(paths=SimpleNamespace(folder=folder)))
    link = job_dir / "submitit_logs"
    for _ in range(2):  # a requeued job's setup replaces the link
        assert job_start(cfg, caplog)[-1] == (
            f"difflab: submitit_local job 1: torch threads: 3; submitit logs in {link}/")
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", ".submitit", "1234_1")  # relative
    assert link.resolve() == folder.resolve()
    assert torch.get_num_threads() == 3 and all(os.environ[name] == "3" for name in THREAD_ENV_VARS)


def test_a_requeued_submitit_job_resumes_its_own_run(tmp_path, monkeypatch):
    def job(output_dir, **given):
        return OmegaConf.create({"task_name": "train", "ckpt_path": None, "resume": None,
                                 "paths": {"output_dir": str(output_dir)}, **given})

    write_status(tmp_path, RUNNING, task="train", step=0)  # preempted before its first checkpoint
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    cfg = job(tmp_path)
    assert not requeued_resume(cfg) and cfg.resume is None  # not a submitit job
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert requeued_resume(cfg) and cfg.resume == "auto"
    write_status(tmp_path, FAILED, step=700)
    cfg = job(tmp_path)
    assert requeued_resume(cfg) and cfg.resume == "auto"
    given = job(tmp_path, ckpt_path="/x.ckpt")
    assert not requeued_resume(given) and given.resume is None  # an explicit checkpoint wins
    fresh = job(tmp_path / "new")
    assert not requeued_resume(fresh) and fresh.resume is None  # no record of its own: a first start
    other = tmp_path / "evaluation"
    write_status(other, RUNNING, task="evaluate")
    cfg = job(other)
    assert not requeued_resume(cfg) and cfg.resume is None  # another task's record


def test_the_study_directory_is_made_by_its_own_step_not_by_the_check(tmp_path, hydra_cleanup):
    db = tmp_path / "studies" / "moons" / "optuna.db"
    cfg = hydra_config(["experiment=moons", "hparams_search=moons_optuna", f"hydra.sweeper.storage=sqlite:///{db}"])
    assert sweeper_refusal(cfg) is None and not db.parent.exists()
    assert prepare_study_storage(cfg) == db.parent and db.parent.is_dir()
    cfg.hydra.sweeper.storage = None
    assert prepare_study_storage(cfg) is None


def test_a_trial_returns_the_best_scored_value_not_the_last(tmp_path):
    history = [[10, {"val/fid_x": 9.0}], [20, {"val/fid_x": 4.0, "val/kid_x": 1.0}], [30, {"val/fid_x": 6.0}],
               [40, {"val/inception_score_x": 2.0}], [50, {"val/inception_score_x": 3.0}]]
    (tmp_path / "evaluation.json").write_text(json.dumps({"history": history}))
    assert Objective("val/fid_x", "min").best_of_run(tmp_path) == 4.0
    assert Objective("val/inception_score_x", "max").best_of_run(tmp_path) == 3.0
    with pytest.raises(ConfigError, match=r"optimized_metric='val/nll' was never scored in this run; the scored "
                                          r"metrics are \['val/fid_x', 'val/inception_score_x', 'val/kid_x'\]"):
        Objective("val/nll", "min").best_of_run(tmp_path)
    assert Objective("val/fid_x", "min").failure_value == math.inf
    assert Objective("val/inception_score_x", "max").failure_value == -math.inf


def test_val_loss_is_read_from_every_csv_log_of_the_run(tmp_path):
    (tmp_path / "csv").mkdir()
    # before a resume (kept as metrics.1.csv) and after it; rows are sparse
    (tmp_path / "csv" / "metrics.1.csv").write_text("epoch,step,train/loss,val/loss\n0,9,1.5,\n0,9,,0.75\n")
    (tmp_path / "csv" / "metrics.csv").write_text("epoch,step,train/loss,val/loss\n0,19,0.25,\n0,19,,0.875\n")
    assert Objective("val/loss", "min", source="csv").best_of_run(tmp_path) == 0.75
    with pytest.raises(ConfigError, match=r"optimized_metric='val/loss' was never logged in this run"):
        Objective("val/loss", "min", source="csv").best_of_run(tmp_path / "empty")


def test_optimized_metric_monitor_is_the_checkpoints_metric_and_the_direction_must_agree(hydra_cleanup):
    cfg = hydra_config(["experiment=moons", "metrics.two_d.num_samples=200", "dataset.num_samples=2000",
                        "+optimized_metric=monitor"])
    assert search_objective(cfg) == Objective("val/two_d_n200_dpmpp2m20", "min")
    assert search_objective(cfg, {"direction": "minimize"}).mode == "min"
    with pytest.raises(ConfigError, match=r"hydra.sweeper.direction=maximize but val/two_d_n200_dpmpp2m20 is better "
                                          r"when lower; set hydra.sweeper.direction=minimize"):
        search_objective(cfg, {"direction": "maximize"})
    cfg.evaluation.monitor_metric = None
    with pytest.raises(ConfigError, match=r"optimized_metric=monitor but evaluation.monitor_metric=null"):
        search_objective(cfg)


def test_an_explicit_optimized_metric_must_be_one_the_run_logs(hydra_cleanup):
    cfg = hydra_config(["experiment=moons", "metrics.two_d.num_samples=200", "+optimized_metric=val/loss"])
    assert search_objective(cfg) == Objective("val/loss", "min", source="csv")
    cfg.optimized_metric = "val/two_d_n200_dpmpp2m20"
    assert search_objective(cfg) == Objective("val/two_d_n200_dpmpp2m20", "min")
    cfg.optimized_metric = "val/two_d_n1000_dpmpp2m20"  # another sample count than the run scores
    with pytest.raises(ConfigError) as refused:
        search_objective(cfg)
    assert str(refused.value) == (
        "optimized_metric='val/two_d_n1000_dpmpp2m20' is not logged by this run; choose monitor, one of the scored "
        "metrics ['val/two_d_n200_dpmpp2m20'] or one of ['val/loss']")
    assert objective_refusal(cfg) == str(refused.value)  # refused before the sweep starts too
    cfg.optimized_metric = "val/loss"
    cfg.logger = {}
    with pytest.raises(ConfigError, match=r"optimized_metric='val/loss' is read from the CSV logs, but the run has "
                                          r"no CSV logger"):
        search_objective(cfg)


def test_the_scored_names_follow_the_metrics_features_and_evaluation_sampler(hydra_cleanup):
    cfg = hydra_config(["metrics=[fid,precision_recall,nll]", "evaluation.sampler.steps=50",
                        "+optimized_metric=val/recall_digits-lenet_n1000_dpmpp2m50"])
    fid, recall = "val/fid_digits-lenet_n1000_dpmpp2m50", "val/recall_digits-lenet_n1000_dpmpp2m50"
    assert search_objective(cfg, {"direction": "maximize"}) == Objective(recall, "max")
    cfg.optimized_metric = fid
    assert search_objective(cfg) == Objective(fid, "min")
    cfg.optimized_metric = "val/nll_bpd_n360_stride10"  # the likelihood bound: its point count comes from the data
    assert search_objective(cfg) == Objective("val/nll_bpd_n360_stride10", "min")
    cfg.optimized_metric = "val/fid_digits-lenet_n1000_dpmpp2m20"  # the default sampler's steps, not the run's
    with pytest.raises(ConfigError, match=r"scored metrics \['val/fid_digits-lenet_n1000_dpmpp2m50', "
                                          r"'val/precision_digits-lenet_n1000_dpmpp2m50', "
                                          rf"'{recall}', 'val/nll_bpd_n<N>_stride10'\]"):
        search_objective(cfg)
