"""trainer=ddp_cpu: two real processes over gloo, one run directory, also inside a --multirun sweep."""

from __future__ import annotations

import torch
from conftest import run_cli

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
