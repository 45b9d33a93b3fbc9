"""A sweep killed half-way and re-run with ``resume=auto`` ends like a sweep that was never interrupted.

The kill is deterministic: job 1 SIGKILLs its own process (the whole sweep: Hydra's basic launcher runs the jobs in
one process) right after step 8's ``last.ckpt`` took its name. Job 0 has finished by then, job 2 never started. The
re-run of the same command skips job 0 (its files untouched), resumes job 1 from its ``last.ckpt`` and runs job 2.
That test is ``slow``; the default run checks one job of such a sweep in this process, set up as Hydra's launcher sets
it up: started afresh, stopped after step 4, continued, and skipped once finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoint_hooks import Stopped, plugin_override
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from difflab.configs import CONFIG_DIR
from difflab.train import train

HERE = Path(__file__).resolve().parent

# moons, 16 steps, a checkpoint every 4 and W2 of 200 points scored every 8: three seeds; the final grid drawn in 20
# DDPM steps (not the preset's 1,000)
SWEEP = [
    "--multirun", "experiment=moons", "seed=0,1,2", "trainer.max_steps=16", "trainer.val_check_interval=8",
    "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "callbacks.model_checkpoint.every_n_train_steps=4",
    "evaluation.every_n_steps=8", "dataset.num_samples=2000", "metrics.two_d.num_samples=200",
    "callbacks.sample_grid.every_n_steps=100", "callbacks.sample_grid.num_samples=16", "sampler.steps=20",
    "callbacks.rich_progress_bar=null", "resume=auto",
]


def run_sweep(sweep: Path, marker: Path, cwd: Path) -> subprocess.CompletedProcess:
    """The same command every time; job 1 kills the sweep at step 8 unless ``marker`` exists (it makes it)."""
    kill = plugin_override("KillingCheckpointIO", step=8, file="last.ckpt", moment="after_rename", job=1,
                           once=marker)
    env = {**os.environ, "DIFFLAB_ROOT": str(cwd), "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "difflab.train", *SWEEP, kill, f"hydra.sweep.dir={sweep}"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def status(job: Path) -> dict:
    return json.loads((job / "status.json").read_text())


# one job of such a sweep at 8 steps: a checkpoint every 2, W2 scored at steps 4 and 8
JOB = [
    "experiment=moons", "seed=1", "trainer.max_steps=8", "trainer.val_check_interval=4", "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1", "callbacks.model_checkpoint.every_n_train_steps=2", "evaluation.every_n_steps=4",
    "dataset.num_samples=2000", "metrics.two_d.num_samples=200", "callbacks.sample_grid.every_n_steps=100",
    "callbacks.sample_grid.num_samples=16", "sampler.steps=20", "callbacks.rich_progress_bar=null", "resume=auto",
]


def sweep_job(sweep: Path, num: int) -> DictConfig:
    """JOB's config as job ``num`` of ``--multirun hydra.sweep.dir=<sweep>`` has it (Hydra's state set likewise)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name="train", overrides=JOB, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(sweep)
        cfg.hydra.job.num = num
        cfg.hydra.runtime.output_dir = str(sweep / str(num))
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def test_a_sweep_job_rerun_with_resume_auto_continues_where_it_stopped_or_is_skipped(
        tmp_path, monkeypatch, hydra_job_state, one_thread):
    """Job 1 of a sweep, in this process. Stopped by an error right after step 4 (its checkpoints of step 4 written,
    nothing after), the same job again continues from its own last.ckpt and ends like the uninterrupted job: weights,
    values, best values and scoring history (step 4's score comes back from the checkpoint). Finished, it is skipped:
    its values returned, its files untouched. In an empty directory it starts afresh."""
    monkeypatch.setenv("DIFFLAB_ROOT", str(tmp_path))
    done, killed = tmp_path / "uninterrupted" / "1", tmp_path / "killed" / "1"
    train(sweep_job(done.parent, 1))
    assert status(done)["status"] == "finished" and status(done)["resumed_from"] is None

    cfg = sweep_job(killed.parent, 1)
    with open_dict(cfg):  # not an override: the job's overrides stay those of the re-run
        cfg.callbacks.stop = {"_target_": "checkpoint_hooks.StopAfterStep", "step": 4}
    with pytest.raises(Stopped):
        train(cfg)
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert status(killed)["status"] != "finished"
    train(sweep_job(killed.parent, 1))
    assert status(killed)["resumed_from"] == str(killed / "checkpoints" / "last.ckpt")
    a = torch.load(done / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    for key in a["state_dict"]:  # raw weights and EMA
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    expected, got = status(done), status(killed)
    assert got["status"] == "finished" and got["metrics"] == expected["metrics"] and got["best"] == expected["best"]
    history = json.loads((killed / "evaluation.json").read_text())["history"]
    assert history == json.loads((done / "evaluation.json").read_text())["history"]
    assert [step for step, _ in history] == [4, 8]

    files = {p: p.stat().st_mtime_ns for p in done.rglob("*") if p.is_file()}
    assert train(sweep_job(done.parent, 1)) == expected["metrics"]
    assert {p: p.stat().st_mtime_ns for p in files} == files


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    marker = root / "killed"
    marker.touch()  # the kill is spent: this sweep runs through
    result = run_sweep(root / "sweep", marker, root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "sweep"


@pytest.mark.slow  # ~50 s: three sweeps, each a process of its own
def test_a_killed_sweep_rerun_with_resume_auto_runs_only_what_is_missing(uninterrupted, tmp_path):
    """Default-run guard: test_a_sweep_job_rerun_with_resume_auto_continues_where_it_stopped_or_is_skipped (in
    process) and test_evaluation_names.py's resume=auto evaluation sweep through the command line."""
    sweep, marker = tmp_path / "sweep", tmp_path / "killed"
    first = run_sweep(sweep, marker, tmp_path)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert status(sweep / "0")["status"] == "finished" and status(sweep / "0")["step"] == 16
    assert status(sweep / "1")["status"] == "running"  # killed: no record of an end
    assert torch.load(sweep / "1" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    assert not (sweep / "2").exists()
    finished_files = {p: p.stat().st_mtime_ns for p in (sweep / "0").rglob("*") if p.is_file()
                      and p.parent.name != ".hydra" and p.name != "train.log"}

    second = run_sweep(sweep, marker, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "skipped" in second.stderr + second.stdout
    assert {p: p.stat().st_mtime_ns for p in finished_files} == finished_files  # job 0 untouched
    assert status(sweep / "1")["resumed_from"].endswith("1/checkpoints/last.ckpt")
    assert status(sweep / "2")["resumed_from"] is None

    for job in ("0", "1", "2"):
        a = torch.load(uninterrupted / job / "checkpoints" / "last.ckpt", weights_only=True)
        b = torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=True)
        assert a["global_step"] == b["global_step"] == 16
        for key in a["state_dict"]:  # raw weights and EMA
            assert torch.equal(a["state_dict"][key], b["state_dict"][key]), (job, key)
        expected, got = status(uninterrupted / job), status(sweep / job)
        assert got["status"] == expected["status"] == "finished"
        assert got["metrics"] == expected["metrics"] and got["best"] == expected["best"], job
        history = json.loads((sweep / job / "evaluation.json").read_text())["history"]
        assert history == json.loads((uninterrupted / job / "evaluation.json").read_text())["history"]
        assert [step for step, _ in history] == [8, 16]  # the killed job's score at step 8 came back from last.ckpt
