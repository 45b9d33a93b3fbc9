"""A sweep killed half-way and re-run with ``resume=auto`` ends like a sweep that was never interrupted.

The kill is deterministic: job 1 SIGKILLs its own process (the whole sweep: Hydra's basic launcher runs the jobs in
one process) right after step 8's ``last.ckpt`` took its name. Job 0 has finished by then, job 2 never started. The
re-run of the same command skips job 0 (its files untouched), resumes job 1 from its ``last.ckpt`` and runs job 2.
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
from checkpoint_hooks import plugin_override

HERE = Path(__file__).resolve().parent

# moons, 16 steps, a checkpoint every 4 and W2 scored every 8: three seeds
SWEEP = [
    "--multirun", "experiment=moons", "seed=0,1,2", "trainer.max_steps=16", "trainer.val_check_interval=8",
    "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "callbacks.model_checkpoint.every_n_train_steps=4",
    "evaluation.every_n_steps=8", "callbacks.sample_grid.every_n_steps=100",
    "callbacks.sample_grid.num_samples=16", "callbacks.rich_progress_bar=null", "resume=auto",
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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    marker = root / "killed"
    marker.touch()  # the kill is spent: this sweep runs through
    result = run_sweep(root / "sweep", marker, root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "sweep"


def test_a_killed_sweep_rerun_with_resume_auto_runs_only_what_is_missing(uninterrupted, tmp_path):
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
