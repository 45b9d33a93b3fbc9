"""The difflab side of the launcher presets and of the search, in process: thread shares, the submitit sizing
resolvers, the refusals, a requeued job's resume, and the value a trial returns."""

from __future__ import annotations

import math

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from difflab.configs import CONFIG_DIR
from difflab.errors import ConfigError
from difflab.sweeps.launchers import (
    gpus_per_node,
    job_processes,
    launcher_kind,
    refusal,
    requeued_resume,
    tasks_per_node,
    threads_per_job,
)
from difflab.sweeps.search import Objective, search_objective


@pytest.mark.parametrize(("n_jobs", "cores", "threads"), [
    (2, 2, 1), (2, 8, 4), (3, 8, 2), (-1, 8, 1), (-2, 8, 8 // 7), (16, 8, 1), (None, 4, 1), (1, 6, 6)])
def test_parallel_jobs_share_the_cores(n_jobs, cores, threads):
    assert threads_per_job(n_jobs, cores) == threads


def test_submitit_presets_size_a_job_from_the_trainer():
    assert gpus_per_node("gpu", 4) == 4 and tasks_per_node("gpu", 4) == 4
    assert gpus_per_node("cpu", 2) is None and tasks_per_node("cpu", 2) == 2
    assert gpus_per_node("gpu", [0, 1]) == 2
    with pytest.raises(ValueError, match=r"trainer.devices='auto'"):
        tasks_per_node("gpu", "auto")
    assert job_processes({"devices": 8, "num_nodes": 2, "accelerator": "gpu"}) == 16
    assert job_processes({"devices": "auto", "num_nodes": 1, "accelerator": "cpu"}) == 1


def hydra_config(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


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


def test_a_requeued_submitit_job_resumes_from_its_own_last_checkpoint(tmp_path, monkeypatch):
    cfg = OmegaConf.create({"ckpt_path": None, "resume": None, "paths": {"output_dir": str(tmp_path)}})
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert not requeued_resume(cfg) and cfg.resume is None  # not a submitit job
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert requeued_resume(cfg) and cfg.resume == "auto"
    given = OmegaConf.create({"ckpt_path": "/x.ckpt", "resume": None, "paths": {"output_dir": str(tmp_path)}})
    assert not requeued_resume(given) and given.resume is None  # an explicit checkpoint wins
    fresh = OmegaConf.create({"ckpt_path": None, "resume": None, "paths": {"output_dir": str(tmp_path / "new")}})
    assert not requeued_resume(fresh) and fresh.resume is None  # nothing to resume: a first start


def test_a_trial_returns_the_best_scored_value_not_the_last():
    history = [[10, {"val/fid_x": 9.0}], [20, {"val/fid_x": 4.0, "val/kid_x": 1.0}], [30, {"val/fid_x": 6.0}]]
    assert Objective("val/fid_x", "min").best(history) == 4.0
    assert Objective("val/inception_score_x", "max").best([[1, {"val/inception_score_x": 2.0}],
                                                           [2, {"val/inception_score_x": 3.0}]]) == 3.0
    assert Objective("val/nll", "min").best(history) is None
    assert Objective("val/fid_x", "min").failure_value == math.inf
    assert Objective("val/inception_score_x", "max").failure_value == -math.inf


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
