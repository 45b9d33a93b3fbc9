"""trainer=ddp_cpu: two real processes over gloo, one run directory, also inside a --multirun sweep."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from conftest import run_cli

HERE = Path(__file__).resolve().parent

TINY = [
    "dataset=digits", "dataset.batch_size=16", "backbone.base_channels=16", "backbone.num_groups=8",
    "backbone.num_res_blocks=1",
    "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
    "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.sample_grid.every_n_steps=2",
    "callbacks.sample_grid.num_samples=4", "sampler.steps=2", "callbacks.rich_progress_bar=null",
]


def test_ddp_cpu_runs_two_processes_into_one_directory(tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", "trainer=ddp_cpu", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log and "GLOBAL_RANK: 0, MEMBER: 1/2" in log
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    assert (run / "samples" / "final.png").is_file()
    assert (run / "train_rank1.log").is_file()  # rank 1 ran the same job in the same directory
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["cache"]  # only the FID reference statistics


def test_multirun_with_ddp_cpu_keeps_one_directory_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("train", "--multirun", "schedule=linear,cosine", "trainer=ddp_cpu", *TINY,
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job, schedule in (("0", "linear"), ("1", "cosine")):
        ckpt = torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == 4
        assert ckpt["difflab"]["config"]["schedule"]["name"] == schedule
        assert (sweep / job / "train_rank1.log").is_file()
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["cache"]


@pytest.mark.slow  # 25 s; the cadence and checkpoint guard are checked in one process in test_faults.py
def test_ddp_cpu_a_nan_on_one_rank_stops_every_rank_at_the_check_and_keeps_the_last_good_checkpoint(tmp_path):
    """Rank 1's batch of step 3 is NaN; the loss is read every 4 steps (speed.finite_check_every_n_steps=4), so the
    ranks decide together at step 4 (or before the checkpoint due after step 4): both stop, the message names step 3,
    and the step-2 checkpoint is the last one. Neither rank waits for ever in an all-reduce (the timeout would say)."""
    run = tmp_path / "run"
    result = run_cli("train", "trainer=ddp_cpu", *TINY, "speed.finite_check_every_n_steps=4", "trainer.max_steps=6",
                     "+callbacks.nan_batch={_target_:checkpoint_hooks.NanBatchOnRank,rank:1,step:3}",
                     f"hydra.run.dir={run}", cwd=tmp_path, timeout=300,
                     env={"PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])})
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]  # either rank's report comes last
    assert re.match(r"difflab-train: error: the training loss is not finite at step 3 on some rank \(rank "
                    r"(0's is (nan at step 4|finite)|1's is nan at step 3)\): the run stopped there\. "
                    r"Last good checkpoint: .*last\.ckpt \(step 2\)$", last), last
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ["last.ckpt", "step_0000002.ckpt"]
