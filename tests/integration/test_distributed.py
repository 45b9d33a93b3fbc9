"""trainer=ddp_cpu: two real processes over gloo, one run directory, scores equal to one process's, also inside a
--multirun sweep."""

from __future__ import annotations

import csv
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple
from unittest import mock

import hydra
import pytest
import torch
import yaml
from conftest import compose_config, run_cli
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.plugins.environments import LightningEnvironment
from pytorch_lightning.strategies.launchers import subprocess_script

from difflab.configs import CONFIG_DIR
from difflab.distributed import DISTRIBUTED_ENV_KEYS
from difflab.evaluate import evaluate

HERE = Path(__file__).resolve().parent

TINY = [
    "dataset=digits", "dataset.batch_size=16", "backbone.base_channels=16", "backbone.num_groups=8",
    "backbone.num_res_blocks=1",
    "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
    "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.sample_grid.every_n_steps=2",
    "callbacks.sample_grid.num_samples=4", "sampler.steps=2", "callbacks.rich_progress_bar=null",
]


# FID and KID of 60 samples scored at the run's end: each of the two ranks draws half of them
SCORED = ["metrics=[fid,kid]", "metrics.fid.num_samples=60", "metrics.kid.num_samples=60", "metrics.kid.subset_size=30",
          "evaluation.every_n_steps=4", "evaluation.sampler.steps=3", "evaluation.batch_size=16"]
FID = "val/fid_digits-lenet_n60_dpmpp2m3"


class DDPRun(NamedTuple):
    root: Path  # DIFFLAB_ROOT of the run
    run: Path
    log: str  # standard output and error of both ranks


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> DDPRun:
    """A tiny digits run under trainer=ddp_cpu (2 processes over gloo), its FID and KID scored at step 4."""
    root = tmp_path_factory.mktemp("ddp")
    run = root / "run"
    result = run_cli("train", "trainer=ddp_cpu", *TINY, *SCORED, f"hydra.run.dir={run}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return DDPRun(root, run, result.stdout + result.stderr)


def logged(run: Path, name: str) -> list[float]:
    with open(run / "csv" / "metrics.csv") as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


def test_ddp_cpu_runs_two_processes_into_one_directory(ddp_run):
    run = ddp_run.run
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in ddp_run.log and "GLOBAL_RANK: 0, MEMBER: 1/2" in ddp_run.log
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    assert (run / "samples" / "final.png").is_file()
    assert (run / "train_rank1.log").is_file()  # rank 1 ran the same job in the same directory
    assert sorted(p.name for p in (ddp_run.root / "outputs").iterdir()) == ["cache"]  # only the reference statistics


def test_fid_and_kid_under_ddp_equal_a_single_process_evaluation(ddp_run, tmp_path, hydra_cleanup):
    """The callback's FID and KID under trainer=ddp_cpu (each rank draws half the samples) equal those of
    difflab-evaluate's scoring of the same checkpoint and seed in one process (another batch size)."""
    fid, kid = logged(ddp_run.run, FID), logged(ddp_run.run, FID.replace("fid", "kid"))
    assert len(fid) == len(kid) == 1
    out = tmp_path / "evaluation"
    row = evaluate(compose_config("evaluate", [
        f"ckpt_path={ddp_run.run / 'checkpoints' / 'last.ckpt'}", "metrics=[fid,kid]", "metrics.fid.num_samples=60",
        "metrics.kid.num_samples=60", "metrics.kid.subset_size=30", "sampler.steps=3", "batch_size=7",
        f"paths.root_dir={ddp_run.root}"], out))  # the run's cached reference statistics
    assert row["fid"] == pytest.approx(fid[0], rel=1e-4)
    assert row["kid"] == pytest.approx(kid[0], rel=1e-3, abs=1e-6)  # the same seeded subsets
    assert (row["step"], row["sampler.name"], row["nfe"], row["fid.num_samples"]) == (4, "dpmpp_2m", 3, 60)
    trained = yaml.safe_load((out / "trained_config.yaml").read_text())  # the report's train.<key> source
    assert trained == yaml.safe_load((ddp_run.run / "resolved_config.yaml").read_text())


def test_the_ranks_of_each_sweep_job_rerun_that_job_not_the_sweep(tmp_path, monkeypatch, hydra_job_state):
    """Hydra's real sweep ``--multirun schedule=linear,cosine trainer=ddp_cpu``, in this process and without training:
    in each job, the launcher of the job's strategy starts rank 1 (Popen recorded, nothing started) as difflab-train
    with that job's overrides into that job's directory, not as the sweep; the MASTER_PORT, LOCAL_RANK, ... set for
    the launch are gone before the next job starts its own."""
    sweep = tmp_path / "sweep"
    started: dict[int, list[tuple[list[str], str, str]]] = {}
    during: dict[int, dict[str, str | None]] = {}
    before = {key: os.environ.get(key) for key in DISTRIBUTED_ENV_KEYS}

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
    def job(cfg: DictConfig) -> None:
        num = HydraConfig.get().job.num
        assert {key: os.environ.get(key) for key in DISTRIBUTED_ENV_KEYS} == before, num  # left as it was found
        strategy = instantiate(cfg.trainer.strategy, accelerator=CPUAccelerator(),
                               parallel_devices=[torch.device("cpu")] * cfg.trainer.devices,
                               cluster_environment=LightningEnvironment())
        strategy._configure_launcher()
        with mock.patch.object(subprocess_script.subprocess, "Popen") as popen, \
                mock.patch.object(subprocess_script, "_launch_process_observer"):
            strategy.launcher.launch(lambda: during.setdefault(num, {k: os.environ.get(k) for k in ("MASTER_PORT",
                                                                                                      "WORLD_SIZE")}))
        started[num] = [(list(c.args[0]), c.kwargs["cwd"], c.kwargs["env"]["LOCAL_RANK"]) for c in popen.call_args_list]

    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))  # Lightning sets it when unset
    monkeypatch.setattr(sys, "argv", ["difflab-train", "--multirun", "schedule=linear,cosine", "trainer=ddp_cpu",
                                      f"hydra.sweep.dir={sweep}", "hydra.job.name=train", "hydra/job_logging=none",
                                      "hydra/hydra_logging=none"])
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", SimpleNamespace(name="difflab.train"), raising=False)
    job()
    for num, schedule in ((0, "linear"), (1, "cosine")):
        command = [sys.executable, "-m", "difflab.train", "--config-name=train", f"schedule={schedule}",
                   "trainer=ddp_cpu", f'hydra.run.dir="{sweep / str(num)}"', "hydra.job.name=train_rank1",
                   "hydra.output_subdir=null"]
        assert started[num] == [(command, os.getcwd(), "1")]
        assert during[num]["WORLD_SIZE"] == "2" and during[num]["MASTER_PORT"]
    assert {key: os.environ.get(key) for key in DISTRIBUTED_ENV_KEYS} == before


@pytest.mark.slow  # ~50 s: two DDP jobs
def test_multirun_with_ddp_cpu_keeps_one_directory_per_job(tmp_path):
    """Two DDP jobs of one sweep, each in a directory of its own with its rank-1 log.
    Default-run guard: test_the_ranks_of_each_sweep_job_rerun_that_job_not_the_sweep and the DDP run above."""
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
