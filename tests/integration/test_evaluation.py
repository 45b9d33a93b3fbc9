"""FID during training and from difflab-evaluate: Inception end to end, its offline error, DDP equals one process."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from cli_driver import run_commands
from conftest import compose_config, run_cli

from difflab.metrics import INCEPTION_FILE, INCEPTION_URL
from difflab.train import train

TINY = [
    "dataset.batch_size=16", "backbone.base_channels=16", "backbone.num_groups=8", "backbone.num_res_blocks=1",
    "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
    "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.sample_grid.every_n_steps=2",
    "callbacks.sample_grid.num_samples=4", "sampler.steps=2", "callbacks.rich_progress_bar=null",
]


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A state dict of torch-fidelity's Inception-v3 with the right names and shapes (random values)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    torch.manual_seed(0)
    with mock.patch.object(fe, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("hub") / INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path


def metric_rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_inception_features_run_end_to_end_with_weights_present(tmp_path, inception_weights, hydra_cleanup):
    run = tmp_path / "run"
    cfg = compose_config("train", [*TINY, "features=inception", f"features.weights_path={inception_weights}",
                                   "metrics.fid.num_samples=8", "evaluation.reference.num_samples=12",
                                   "evaluation.every_n_steps=4", "evaluation.sampler.steps=2",
                                   "evaluation.batch_size=4", f"paths.root_dir={tmp_path}"], run)
    train(cfg)
    name = "val/fid_inception_n8_dpmpp2m2"
    values = [float(r[name]) for r in metric_rows(run) if r.get(name)]
    assert len(values) == 1 and values[0] > 0
    record = json.loads((run / "evaluation.json").read_text())
    assert record["history"][0][0] == 4 and record["history"][0][1][name] == pytest.approx(values[0], rel=1e-6)
    assert (run / "checkpoints" / "best.ckpt").is_file()
    cached = list((tmp_path / "outputs" / "cache").glob("digits_train_inception_n12_*.pt"))
    assert len(cached) == 1  # the reference statistics were cached under a key naming dataset, split, extractor, n


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """difflab-train with features it cannot use, through its entry point (both in one process, cli_driver.py): the
    directory each was given (also its TORCH_HOME) and the outcome."""
    root = tmp_path_factory.mktemp("refused")
    runs = {"no weights": ["features=inception"],
            "3 channels": ["dataset=shapes", "dataset.channels=3", "backbone=unet_small", "metrics=[fid]",
                           "features=digits"]}
    outcomes = run_commands([["train", *args, f"hydra.run.dir={root / name / 'run'}"] for name, args in runs.items()],
                            root, env={"TORCH_HOME": str(root / "no weights" / "torch")})
    return {name: (root / name, outcome) for name, outcome in zip(runs, outcomes)}


def test_missing_inception_weights_stop_the_run_before_training(refused):
    directory, result = refused["no weights"]
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("difflab-train: error:") and "Traceback" not in result.stderr
    assert INCEPTION_FILE in message and INCEPTION_URL in message and "features.weights_path" in message
    assert str(directory / "torch" / "hub" / "checkpoints") in message
    assert not (directory / "run" / "checkpoints").exists()


def test_an_extractor_that_cannot_read_the_data_is_rejected_before_training(refused):
    _, result = refused["3 channels"]
    assert result.returncode == 2
    assert "features=digits-lenet scores 1-channel images, but the dataset gives 3-channel images" in result.stderr


@pytest.mark.slow  # ~40 s: a DDP run and an evaluation sweep, each a command of its own
def test_ddp_fid_equals_one_process_and_evaluate_sweeps_samplers(tmp_path):
    """The callback's FID under trainer=ddp_cpu (each rank draws half the samples) equals difflab-evaluate's
    single-process FID of the same checkpoint and seed; a --multirun over steps writes one row per run.
    Default-run guard: test_distributed.py::test_fid_and_kid_under_ddp_equal_a_single_process_evaluation."""
    run = tmp_path / "run"
    result = run_cli("train", "trainer=ddp_cpu", *TINY, "metrics=[fid,kid]", "metrics.fid.num_samples=60",
                     "metrics.kid.num_samples=60", "metrics.kid.subset_size=30", "evaluation.every_n_steps=4",
                     "evaluation.sampler.steps=3", "evaluation.batch_size=16", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    name = "val/fid_digits-lenet_n60_dpmpp2m3"
    ddp_value = [float(r[name]) for r in metric_rows(run) if r.get(name)]
    assert len(ddp_value) == 1

    sweep = tmp_path / "sweep"
    result = run_cli("evaluate", "--multirun", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "metrics=[fid,kid]",
                     "metrics.fid.num_samples=60", "metrics.kid.num_samples=60", "metrics.kid.subset_size=30",
                     "sampler.steps=3,6", "batch_size=7", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((sweep / "results.json").read_text())
    assert [r["sampler.steps"] for r in rows] == [3, 6]
    assert rows[0]["fid"] == pytest.approx(ddp_value[0], rel=1e-4)
    kid = [float(r[name.replace("fid", "kid")]) for r in metric_rows(run) if r.get(name.replace("fid", "kid"))]
    assert rows[0]["kid"] == pytest.approx(kid[0], rel=1e-3, abs=1e-6)  # same seeded subsets
    assert all(r["fid.num_samples"] == 60 and r["step"] == 4 and r["sampler.name"] == "dpmpp_2m" for r in rows)
    assert [r["nfe"] for r in rows] == [3, 6]  # model evaluations per sample: one per DPM-Solver++(2M) step
    trained = yaml.safe_load((sweep / "0" / "trained_config.yaml").read_text())  # the report's train.<key> source
    assert trained == yaml.safe_load((run / "resolved_config.yaml").read_text())
    with open(sweep / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    for job in ("0", "1"):
        assert json.loads((sweep / job / "results.json").read_text())[0]["sampler.steps"] == (3, 6)[int(job)]
