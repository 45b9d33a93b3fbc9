"""Crashes and faults lose nothing: SIGKILL mid-run and mid-checkpoint-write, a NaN loss, W&B unavailable."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import checkpoint_hooks
import pytest
import torch
from checkpoint_hooks import csv_values, plugin_override
from conftest import compose_config

from difflab.errors import TrainingStopped
from difflab.module import DiffusionModule
from difflab.train import train

HERE = Path(__file__).resolve().parent

# A small U-Net with dropout, LR warm-up and EMA; a checkpoint every 4 steps, every loss logged.
TINY = [
    "dataset.batch_size=32", "backbone.base_channels=16", "backbone.num_groups=8", "backbone.num_res_blocks=1",
    "backbone.dropout=0.1", "optim.warmup_steps=5", "ema.decay=0.99", "trainer.max_steps=16",
    "trainer.val_check_interval=8",
    "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "callbacks.model_checkpoint.every_n_train_steps=4",
    "callbacks.sample_grid.every_n_steps=100", "callbacks.rich_progress_bar=null", "metrics=[]",
]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """``difflab-train args`` in a subprocess that can import :mod:`checkpoint_hooks` (the kill points)."""
    env = {**os.environ, "DIFFLAB_ROOT": str(cwd), "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "difflab.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def killed(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == -signal.SIGKILL, f"exit {process.returncode}: {err[-3000:]}"


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]


def logged_losses(run: Path) -> dict[int, float]:
    """train/loss by step from every metrics file of the run (those kept across resumes too)."""
    out: dict[int, float] = {}
    for path in sorted((run / "csv").glob("metrics*.csv")):
        with open(path) as handle:
            for row in csv.DictReader(handle):
                if row.get("train/loss"):
                    step, loss = int(row["step"]), float(row["train/loss"])
                    assert out.setdefault(step, loss) == loss, f"step {step} logged twice with different losses"
    return out


def assert_same_end(run: Path, reference: Path) -> None:
    a = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 16
    for key in a["state_dict"]:  # raw weights and EMA
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        for name in sa:
            assert torch.equal(torch.as_tensor(sa[name]), torch.as_tensor(sb[name])), name
    expected, got = logged_losses(reference), logged_losses(run)
    assert sorted(got) == sorted(expected) and len(expected) == 16
    assert all(got[s] == expected[s] for s in expected)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    finish(start([*TINY, f"hydra.run.dir={root / 'run'}"], root))
    return root / "run"


def test_sigkill_mid_run_then_ckpt_path_last_ends_like_an_uninterrupted_run(uninterrupted, tmp_path):
    """Killed right after step 8's last.ckpt took its name: before Lightning hands step 8's values (the loss of
    step index 7) to the loggers. The resume starts after that step, so the row must already be on disk."""
    run = tmp_path / "run"
    args = [*TINY, f"hydra.run.dir={run}"]
    killed(start([*args, plugin_override("KillingCheckpointIO", step=8, file="last.ckpt", moment="after_rename")],
                 tmp_path))
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    assert not (run / "checkpoints" / "step_0000012.ckpt").exists()
    assert sorted(csv_values(run)["train/loss"]) == list(range(8))  # steps 0..7: all the killed run did
    finish(start([*args, "ckpt_path=last"], tmp_path))
    assert (run / "csv" / "metrics.1.csv").is_file()  # the killed run's log, kept
    assert_same_end(run, uninterrupted)


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_loadable(uninterrupted, tmp_path):
    run = tmp_path / "run"
    args = [*TINY, f"hydra.run.dir={run}"]
    killed(start([*args, plugin_override("KillingCheckpointIO", step=8, file="step_0000008.ckpt",
                                         moment="before_rename")], tmp_path))
    checkpoints = run / "checkpoints"
    assert not (checkpoints / "step_0000008.ckpt").exists()  # the half-written file never took the name
    assert len(list(checkpoints.glob(".step_0000008.ckpt.*.tmp"))) == 1
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 4
    finish(start([*args, "ckpt_path=last"], tmp_path))
    assert_same_end(run, uninterrupted)


def test_every_checkpoint_is_written_after_the_values_logged_before_it_are_on_disk(tmp_path, hydra_cleanup):
    """Periodic checkpoints, last.ckpt and best.ckpt: when each is about to take its name, metrics.csv and the
    TensorBoard events on disk already hold every loss up to its step and the evaluation of its step."""
    checkpoint_hooks.RECORDS.clear()
    run = tmp_path / "run"
    fid = "val/fid_digits-lenet_n20_dpmpp2m2"
    overrides = [*[o for o in TINY if not o.startswith(("trainer.max_steps", "metrics="))], "trainer.max_steps=8",
                 "logger=many", "~logger.wandb", "metrics=[fid]", "metrics.fid.num_samples=20",
                 "evaluation.every_n_steps=4", "evaluation.reference.num_samples=40", "evaluation.sampler.steps=2",
                 "evaluation.batch_size=20",
                 f"paths.root_dir={tmp_path}", plugin_override("RecordingCheckpointIO")]
    train(compose_config("train", overrides, run))
    written = [(r["file"], r["step"]) for r in checkpoint_hooks.RECORDS]
    assert sorted(w for w in written if w[0] != "best.ckpt") == [("last.ckpt", 4), ("last.ckpt", 8),
                                                                 ("step_0000004.ckpt", 4), ("step_0000008.ckpt", 8)]
    assert ("best.ckpt", 4) in written
    for record in checkpoint_hooks.RECORDS:
        step = record["step"]
        for source in ("csv", "tensorboard"):
            values = record[source]
            assert sorted(s for s in values["train/loss"] if s < step) == list(range(step)), (
                record["file"], step, source)
            assert step in values[fid], (record["file"], step, source)  # this step's evaluation (best.ckpt reads it)


def test_resume_auto_continues_the_newest_matching_run_or_starts_afresh(tmp_path, hydra_cleanup, one_thread):
    short = [o for o in TINY if not o.startswith("trainer.max_steps")] + [f"paths.root_dir={tmp_path}"]
    runs = tmp_path / "outputs" / "train" / "runs"
    train(compose_config("train", [*short, "trainer.max_steps=4"], runs / "first"))
    # Same overrides (max_steps may differ) in a new directory: continues from the first run's last.ckpt.
    second = runs / "second"
    train(compose_config("train", [*short, "trainer.max_steps=8", "resume=auto"], second))
    assert json.loads((second / "status.json").read_text())["resumed_from"] == str(
        runs / "first" / "checkpoints" / "last.ckpt")
    assert torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    assert min(logged_losses(second)) == 4  # logged steps count from 0: the 5th step is step 4
    # Other overrides: nothing to continue, a fresh run.
    third = runs / "third"
    train(compose_config("train", [*short, "trainer.max_steps=4", "seed=1", "resume=auto"], third))
    assert json.loads((third / "status.json").read_text())["resumed_from"] is None
    assert min(logged_losses(third)) == 0


def nan_training_loss_at_step(step: int, monkeypatch) -> None:
    """Make the training loss of optimizer step ``step`` (1-based) NaN."""
    real_loss = DiffusionModule._loss

    def loss(self, batch, *args, **kwargs):
        value = real_loss(self, batch, *args, **kwargs)
        return value * float("nan") if self.training and self.global_step == step - 1 else value

    monkeypatch.setattr(DiffusionModule, "_loss", loss)


def test_a_nan_loss_stops_the_run_at_once_and_keeps_the_last_good_checkpoint(tmp_path, hydra_cleanup, monkeypatch):
    nan_training_loss_at_step(6, monkeypatch)
    run = tmp_path / "run"
    with pytest.raises(TrainingStopped) as stopped:
        train(compose_config("train", TINY, run))
    message = str(stopped.value)
    assert "the training loss is nan at step 6" in message
    assert f"Last good checkpoint: {run / 'checkpoints' / 'last.ckpt'} (step 4)" in message
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ["last.ckpt", "step_0000004.ckpt"]
    losses = logged_losses(run)
    assert max(losses) == 4 and all(map(torch.isfinite, map(torch.tensor, losses.values())))


@pytest.mark.parametrize("every, stops_at", [(4, 7), (16, 8)])
def test_a_nan_loss_read_every_k_steps_stops_within_k_steps_and_no_checkpoint_holds_it(
        every, stops_at, tmp_path, hydra_cleanup, monkeypatch):
    """speed.finite_check_every_n_steps=k: the loss is read on the host every k steps and before each checkpoint.
    A NaN at step 5: with k = 4 the check of step 8 finds it (before step 8's backward); with k = 16 the checkpoint
    due after step 8 finds it. Either way the message names step 5, and the step-4 checkpoint is the last one."""
    nan_training_loss_at_step(5, monkeypatch)
    run = tmp_path / "run"
    with pytest.raises(TrainingStopped) as stopped:
        train(compose_config("train", [*TINY, f"speed.finite_check_every_n_steps={every}",
                                       "trainer.val_check_interval=16"], run))
    message = str(stopped.value)
    assert "the training loss is nan at step 5" in message
    assert f"Last good checkpoint: {run / 'checkpoints' / 'last.ckpt'} (step 4)" in message
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ["last.ckpt", "step_0000004.ckpt"]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and status["step"] == stops_at  # k = 4: step 8 raised before stepping


def test_a_diverging_run_stops_with_one_line_and_exit_status_1(tmp_path):
    """Through the command line: a learning rate of 1e30 sends the weights to inf after the first step."""
    result = subprocess.run([sys.executable, "-m", "difflab.train", *TINY, "optim.optimizer.lr=1e30",
                             "optim.warmup_steps=0", f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=tmp_path, env={**os.environ, "DIFFLAB_ROOT": str(tmp_path)},
                            capture_output=True, text=True, timeout=300)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1, result.stderr[-2000:]
    assert re.match(r"difflab-train: error: the training loss is (nan|inf) at step 2: the run stopped there\. "
                    r"Last good checkpoint: none was written$", last), last
    assert "Traceback" not in result.stderr


def test_unreachable_wandb_falls_back_to_offline_with_one_warning(tmp_path, monkeypatch):
    import socket

    from difflab.loggers import make_wandb_logger

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port here
    monkeypatch.delenv("WANDB_MODE", raising=False)
    real_connect, attempts = socket.create_connection, []

    def connect(address, timeout=None, *args, **kwargs):  # the check may wait 3 seconds at most (not timed here)
        attempts.append((address, timeout))
        return real_connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = make_wandb_logger(project="difflab", save_dir=str(tmp_path))
    assert attempts[0] == (("127.0.0.1", 9), 3.0)
    assert logger._offline
    assert [str(w.message) for w in caught if "W&B" in str(w.message)] == [
        "W&B: 127.0.0.1:9 cannot be reached (Connection refused); "
        "logging offline instead (sync later with `wandb sync`)"]


def test_a_wandb_run_that_fails_to_start_online_continues_offline(tmp_path, monkeypatch):
    import wandb

    from difflab.loggers import FallbackWandbLogger

    real_init, modes = wandb.init, []

    def init(**kwargs):
        modes.append(kwargs.get("mode"))
        if kwargs.get("mode") != "offline":
            raise wandb.errors.AuthenticationError("API key rejected")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = FallbackWandbLogger(offline=False, project="difflab", save_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="W&B could not start an online run .*AuthenticationError: "
                                         "API key rejected.*logging offline"):
        experiment = logger.experiment
    try:
        assert modes == [None, "offline"] and experiment.settings.mode == "offline"
        logger.log_metrics({"train/loss": 1.0}, step=0)
    finally:
        wandb.finish()


def test_a_new_column_rewrites_metrics_csv_atomically(tmp_path, monkeypatch):
    """A value logged for the first time (val/loss, an FID) makes the CSV logger rewrite the file with a new
    header. Lightning's writer truncates the file first: a kill then loses every row. Here the rewrite goes to
    a temporary file that is renamed over metrics.csv, so a kill before the rename leaves the old file."""
    from difflab.loggers import DurableCSVLogger

    logger = DurableCSVLogger(tmp_path, name="csv", version="", flush_logs_every_n_steps=1)
    for step in range(3):
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    path = tmp_path / "csv" / "metrics.csv"
    before = path.read_bytes()
    assert sorted(csv_values(tmp_path)["train/loss"]) == [0, 1, 2]

    def killed_before_rename(src, dst):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, "replace", killed_before_rename)
    with pytest.raises(KeyboardInterrupt):
        logger.log_metrics({"val/loss": 0.7}, step=3)
    assert path.read_bytes() == before
    monkeypatch.undo()
    logger.log_metrics({"train/loss": 0.2}, step=4)  # the next save writes what was pending, under the new header
    assert csv_values(tmp_path) == {"train/loss": {0: 1.0, 1: 0.5, 2: 1 / 3, 4: 0.2}, "val/loss": {3: 0.7}}
