"""difflab-evaluate names what it measured: a sweep over a sampler setting gives names of their own, and one set of
samples scored against [train, val] gives the values that separate runs against train and against val give."""

from __future__ import annotations

import json

import pytest
import torch
from cli_driver import run_commands
from conftest import compose_config, run_cli

from difflab.errors import ConfigError
from difflab.evaluate import evaluate_recorded
from difflab.train import train

TINY = ["dataset.batch_size=16", "backbone.base_channels=16", "backbone.num_groups=8", "backbone.num_res_blocks=1",
        "trainer.max_steps=2", "callbacks.rich_progress_bar=null", "callbacks.sample_grid.every_n_steps=100",
        "callbacks.model_checkpoint.every_n_train_steps=2"]
# scored during training against both splits, val first: best.ckpt then tracks the value against val
TRAIN_SCORING = ["metrics=[fid]", "metrics.fid.num_samples=20", "evaluation.every_n_steps=2",
                 "evaluation.batch_size=20", "evaluation.sampler.steps=2", "evaluation.reference.split=[val,train]"]
SCORED = ["metrics=[fid,kid,precision_recall]", "metrics.fid.num_samples=40", "metrics.kid.num_samples=40",
          "metrics.kid.subset_size=20", "metrics.precision_recall.num_samples=40", "batch_size=20", "sampler=ddim",
          "sampler.steps=2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real training run of a tiny digits model (2 steps), scored at its end against val and train."""
    from hydra.core.global_hydra import GlobalHydra

    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(compose_config("train", [*TINY, *TRAIN_SCORING], run))
    GlobalHydra.instance().clear()
    return run


@pytest.fixture(scope="module")
def checkpoint(run_dir):
    return run_dir / "checkpoints" / "last.ckpt"


def test_training_scores_both_splits_and_best_ckpt_tracks_the_first(run_dir):
    history = json.loads((run_dir / "evaluation.json").read_text())["history"]
    assert [(step, sorted(values)) for step, values in history] == \
        [(2, ["val/fid_digits-lenet_n20_dpmpp2m2", "val/fid_digits-lenet_n20_dpmpp2m2_refval"])]
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    monitors = [k for k in best["callbacks"] if k.startswith("ModelCheckpoint") and "'monitor': 'val/" in k]
    assert len(monitors) == 1 and "'monitor': 'val/fid_digits-lenet_n20_dpmpp2m2_refval'" in monitors[0]


def sweep_rows(checkpoint, tmp_path, *overrides: str) -> list[dict]:
    sweep = tmp_path / "sweep"
    result = run_cli("evaluate", "--multirun", f"ckpt_path={checkpoint}", *overrides, f"hydra.sweep.dir={sweep}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((sweep / "results.json").read_text())


def test_a_sweep_over_ddim_eta_logs_one_name_per_setting_and_resumes(checkpoint, tmp_path):
    """Four ``difflab-evaluate --multirun`` commands on one sweep directory, run one after another through the entry
    point (cli_driver.py): the sweep, the same sweep with resume=auto, other axes, and the same sweep without it."""
    sweep = tmp_path / "sweep"
    axes = ["--multirun", f"ckpt_path={checkpoint}", "metrics=[fid]", "metrics.fid.num_samples=20", "batch_size=20",
            "sampler=ddim", "sampler.steps=2", f"hydra.sweep.dir={sweep}"]
    (first,) = run_commands([["evaluate", *axes, "sampler.eta=0,1", "resume=auto"]], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.loads((sweep / "results.json").read_text())
    assert [json.loads(r["metric_names"]) for r in rows] == [["val/fid_digits-lenet_n20_ddim2"],
                                                             ["val/fid_digits-lenet_n20_ddim2-eta1"]]
    assert [r["sampler.eta"] for r in rows] == [0, 1] and rows[0]["fid"] != rows[1]["fid"]
    job_files = sorted(sweep.glob("*/results.json"))
    stamps = [f.stat().st_mtime_ns for f in job_files]
    again, refused, fresh = run_commands([
        ["evaluate", *axes, "sampler.eta=0,1", "resume=auto"],  # the same command: both jobs skipped, no row added
        ["evaluate", *axes, "sampler.eta=1,0", "resume=auto"],  # other axes: job 0 would be another evaluation
        ["evaluate", *axes, "sampler.eta=0,1"],  # without resume=auto: would overwrite the jobs and add their rows
    ], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds this evaluation finished: skipped" in again.stdout
    assert refused.returncode == 2 and "holds an evaluation of other overrides" in refused.stderr
    assert fresh.returncode == 2 and "holds a finished evaluation; add resume=auto" in fresh.stderr
    assert [f.stat().st_mtime_ns for f in job_files] == stamps and len(job_files) == 2
    assert json.loads((sweep / "results.json").read_text()) == rows


def test_one_set_of_samples_scored_against_train_and_val_equals_two_separate_runs(checkpoint, tmp_path):
    rows = sweep_rows(checkpoint, tmp_path, *SCORED, "reference.split=[train,val],train,val")
    both, alone_train, alone_val = rows
    base = "digits-lenet_n40_ddim2"
    train_names = [f"val/fid_{base}", f"val/kid_{base}", f"val/kid_{base}_std", f"val/precision_{base}",
                   f"val/recall_{base}"]
    val_names = [f"val/fid_{base}_refval", f"val/kid_{base}_refval", f"val/kid_{base}_refval_std",
                 f"val/precision_{base}_refval", f"val/recall_{base}_refval"]
    assert json.loads(both["metric_names"]) == sorted(train_names + val_names)
    assert json.loads(alone_train["metric_names"]) == sorted(train_names)
    assert json.loads(alone_val["metric_names"]) == sorted(val_names)
    assert (both["reference_split"], alone_train["reference_split"], alone_val["reference_split"]) == \
        ('["train", "val"]', "train", "val")
    train_columns = ["fid", "kid", "kid_std", "precision", "recall"]
    val_columns = ["fid_refval", "kid_refval", "kid_refval_std", "precision_refval", "recall_refval"]
    # exactly equal: the same samples, features, reference statistics and seeded KID subsets
    assert {c: both[c] for c in train_columns} == {c: alone_train[c] for c in train_columns}
    assert {c: both[c] for c in val_columns} == {c: alone_val[c] for c in val_columns}
    assert both["fid"] != both["fid_refval"]  # two different references


def test_a_bad_reference_split_stops_before_any_work(checkpoint, tmp_path, hydra_cleanup):
    """The ConfigError difflab-evaluate prints as its one line (exit status 2), raised before any sample is drawn."""
    run = tmp_path / "run"
    with pytest.raises(ConfigError) as refused:
        evaluate_recorded(compose_config("evaluate", [f"ckpt_path={checkpoint}", "metrics=[fid]",
                                                      "reference.split=[train,test]"], run))
    assert str(refused.value) == (
        "reference.split=['train', 'test'] must be one of ['train', 'val'] or a list of them without repeats, "
        "e.g. [train,val]")
    assert not (run / "results.json").exists()
