"""Which checkpoint a run resumes from, and whether its model settings fit the run's config (no training)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from difflab.module import CHECKPOINT_KEY
from difflab.resume import config_mismatches, find_last_checkpoint, resolve_ckpt_path

CONFIG = {
    "seed": 0,
    "backbone": {"_target_": "difflab.backbones.UNet", "base_channels": 32, "channel_mults": [1, 2]},
    "objective": {"prediction_type": "eps", "loss": "l2"},
    "schedule": {"name": "linear", "num_timesteps": 1000, "beta_end": 0.02},
    "dataset": {"name": "digits", "image_size": 8, "channels": 1, "batch_size": 128},
    "conditioning": {"enabled": False, "label_dropout": 0.1},
    "ema": {"enabled": True, "decay": 0.9999},
    "trainer": {"max_steps": 1800},
    "optim": {"optimizer": {"lr": 2e-4}},
    "data": {"shape": [1, 8, 8], "num_classes": 10, "num_bins": 17},  # the data module's facts, as a run records them
}


def checkpoint(config: dict) -> dict:
    return {CHECKPOINT_KEY: {"config": config, "data_shape": [1, 8, 8]}, "state_dict": {}}


def changed(path: str, value) -> dict:
    """CONFIG with the dotted ``path`` set to ``value`` (a deep copy)."""
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[leaf] = value
    return config


def test_the_same_model_settings_fit_even_when_training_settings_differ():
    assert config_mismatches(checkpoint(CONFIG), CONFIG) == []
    for path, value in [("seed", 3), ("trainer.max_steps", 10), ("optim.optimizer.lr", 1.0), ("dataset.batch_size", 7),
                        ("conditioning.label_dropout", 0.5), ("ema.decay", 0.99)]:
        assert config_mismatches(checkpoint(CONFIG), changed(path, value)) == [], path


@pytest.mark.parametrize("path, value, line", [
    ("backbone.base_channels", 64, "backbone.base_channels: 32 -> 64"),
    ("backbone.channel_mults", [1, 2, 2], "backbone.channel_mults: [1, 2] -> [1, 2, 2]"),
    ("objective.prediction_type", "v", "objective.prediction_type: 'eps' -> 'v'"),
    ("schedule.name", "cosine", "schedule.name: 'linear' -> 'cosine'"),
    ("schedule.num_timesteps", 500, "schedule.num_timesteps: 1000 -> 500"),
    ("schedule.beta_end", 0.03, "schedule.beta_end: 0.02 -> 0.03"),  # any key of the schedule changes the betas
    ("dataset.name", "mnist", "dataset.name: 'digits' -> 'mnist'"),
    ("data.shape", [3, 8, 8], "data.shape: [1, 8, 8] -> [3, 8, 8]"),
    ("conditioning.enabled", True, "conditioning.enabled: False -> True"),
    ("ema.enabled", False, "ema.enabled: True -> False"),
])
def test_each_model_setting_that_differs_is_named_with_both_values(path, value, line):
    assert config_mismatches(checkpoint(CONFIG), changed(path, value)) == [line]


def test_a_setting_on_one_side_only_is_a_mismatch_and_all_are_listed_in_key_order():
    wanted = changed("backbone.attention", True)
    wanted["schedule"]["num_timesteps"] = 4000
    assert config_mismatches(checkpoint(CONFIG), wanted) == [
        "backbone.attention: None -> True", "schedule.num_timesteps: 1000 -> 4000"]


def test_the_number_of_classes_counts_for_a_conditional_model_only():
    assert config_mismatches(checkpoint(CONFIG), changed("data.num_classes", 2)) == []
    conditional = changed("conditioning.enabled", True)
    assert config_mismatches(checkpoint(conditional), conditional) == []
    other = yaml.safe_load(yaml.safe_dump(conditional))
    other["data"]["num_classes"] = 2
    assert config_mismatches(checkpoint(conditional), other) == ["data.num_classes: 10 -> 2"]


def test_data_facts_not_known_yet_are_not_compared():
    before_data = {k: v for k, v in changed("data.shape", [3, 8, 8]).items() if k != "data"}
    assert config_mismatches(checkpoint(CONFIG), before_data) == []
    assert config_mismatches(checkpoint(CONFIG), {**before_data, "ema": {"enabled": False}}) == [
        "ema.enabled: True -> False"]


# ----------------------------------------------------------------------------- finding last.ckpt
def make_run(task_dir: Path, name: str, overrides: list[str], mtime: float, kind: str = "runs") -> Path:
    """A finished run directory: .hydra/overrides.yaml and checkpoints/last.ckpt with the given mtime."""
    run = task_dir / kind / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"checkpoint")
    os.utime(ckpt, (mtime, mtime))
    return ckpt


def test_this_runs_own_last_checkpoint_comes_first(tmp_path):
    task = tmp_path / "outputs" / "train"
    make_run(task, "other", ["seed=1"], mtime=2_000_000_000)
    own_dir = task / "runs" / "mine"
    own = own_dir / "checkpoints" / "last.ckpt"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"x")
    os.utime(own, (1_000_000_000, 1_000_000_000))  # older than the other run's: still chosen
    assert find_last_checkpoint(own_dir, task, ["seed=1"]) == own


def test_else_the_newest_earlier_run_with_the_same_overrides(tmp_path):
    task = tmp_path / "outputs" / "train"
    old = make_run(task, "a", ["seed=1", "dataset=moons"], mtime=1_000_000_000)
    new = make_run(task, "b", ["dataset=moons", "seed=1", "trainer.max_steps=100", "ckpt_path=last"],
                   mtime=1_000_000_100)
    swept = make_run(task, "0", ["seed=1", "dataset=moons", "resume=auto"], mtime=1_000_000_050,
                     kind="multiruns/2024-01-01")
    make_run(task, "c", ["seed=2", "dataset=moons"], mtime=1_000_000_200)  # other overrides: never chosen
    make_run(task, "d", ["seed=1"], mtime=1_000_000_300)
    here = task / "runs" / "new"
    # ckpt_path, resume, trainer.max_steps and hydra.* do not count; the order of the overrides does not matter
    assert find_last_checkpoint(here, task, ["seed=1", "dataset=moons", "ckpt_path=last", "hydra.run.dir=x"]) == new
    os.utime(new, (999_999_999, 999_999_999))
    assert find_last_checkpoint(here, task, ["dataset=moons", "seed=1"]) == swept
    os.utime(swept, (999_999_998, 999_999_998))
    assert find_last_checkpoint(here, task, ["dataset=moons", "seed=1"]) == old
    assert find_last_checkpoint(here, task, ["seed=3"]) is None


def test_resolve_ckpt_path(tmp_path):
    task = tmp_path / "outputs" / "train"
    here = task / "runs" / "new"
    assert resolve_ckpt_path(None, None, here, task, []) is None  # a fresh run
    # checked later, when loaded
    assert resolve_ckpt_path("/some/where.ckpt", None, here, task, []) == "/some/where.ckpt"
    assert resolve_ckpt_path(None, "auto", here, task, ["seed=1"]) is None  # nothing to continue: start afresh
    with pytest.raises(ValueError,
                       match=r"ckpt_path=last found no checkpoints/last\.ckpt .* with the same overrides \['seed=1'\]"):
        resolve_ckpt_path("last", None, here, task, ["seed=1", "ckpt_path=last"])
    found = make_run(task, "a", ["seed=1"], mtime=1_000_000_000)
    assert resolve_ckpt_path("last", None, here, task, ["seed=1", "ckpt_path=last"]) == str(found)
    assert resolve_ckpt_path(None, "auto", here, task, ["seed=1", "resume=auto"]) == str(found)
    with pytest.raises(ValueError, match=r"resume='yes' is not accepted"):
        resolve_ckpt_path(None, "yes", here, task, [])


def write_record(run: Path, **fields) -> None:
    from difflab.sweeps.status import write_status

    write_status(run, fields.pop("status"), **fields)


def test_resume_auto_skips_only_the_same_job_finished_with_the_same_max_steps(tmp_path):
    from difflab.resume import finished_job

    job = tmp_path / "sweep" / "1"
    assert finished_job(job, ["seed=1"], 100, sweep_job=True) is None  # nothing there: the job starts
    write_record(job, status="running", task="train", overrides=["seed=1", "resume=auto"], max_steps=100, step=40)
    assert finished_job(job, ["resume=auto", "seed=1"], 100) is None  # killed: resumed from its last.ckpt
    write_record(job, status="finished", step=100, metrics={"val/loss": 0.5})
    record = finished_job(job, ["resume=auto", "seed=1"], 100)
    assert record["step"] == 100 and record["metrics"] == {"val/loss": 0.5}
    assert finished_job(job, ["resume=auto", "seed=1"], 200) is None  # asked to train longer: resumed, not skipped
    with pytest.raises(ValueError, match=r"holds a run of other overrides \['seed=1'\], not \['seed=2'\]"):
        finished_job(job, ["resume=auto", "seed=2"], 100, sweep_job=True)  # the sweep dir re-used for another sweep
    assert finished_job(job, ["resume=auto", "seed=2"], 100) is None  # a single run: other overrides, not skipped


def test_a_fresh_run_refuses_a_directory_that_holds_a_run(tmp_path):
    run = tmp_path / "run"
    write_record(run, status="failed", task="train", overrides=[], error="bad value", step=0)
    assert resolve_ckpt_path(None, None, run, tmp_path, []) is None  # failed before training: nothing to lose
    write_record(run, status="finished", step=30)
    with pytest.raises(ValueError, match=r"holds a run already \(finished at step 30\); add resume=auto"):
        resolve_ckpt_path(None, None, run, tmp_path, [])
    # resume=auto with no checkpoint to continue (stopped before the first one): starts afresh in the directory
    assert resolve_ckpt_path(None, "auto", run, tmp_path, []) is None


def test_a_sweep_job_continues_only_its_own_run_and_reads_the_run_s_own_overrides(tmp_path):
    task_dir = tmp_path / "train"
    earlier = task_dir / "runs" / "2026-11-30_10-00-00"
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "checkpoints" / "last.ckpt").write_bytes(b"")
    (earlier / ".hydra").mkdir()
    (earlier / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=1"]))
    job = task_dir / "sweeps" / "moons" / "0"
    assert resolve_ckpt_path(None, "auto", job, task_dir, ["seed=1"]) == str(earlier / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path(None, "auto", job, task_dir, ["seed=1"], sweep_job=True) is None  # starts afresh
    # a job refused in that directory had Hydra rewrite its .hydra/overrides.yaml: the run's status.json decides
    write_record(earlier, status="finished", task="train", overrides=["seed=2"], step=10)
    assert resolve_ckpt_path(None, "auto", tmp_path / "new", task_dir, ["seed=1"]) is None
    assert resolve_ckpt_path(None, "auto", tmp_path / "new", task_dir, ["seed=2", "logger=wandb",
                                                                        "hydra/launcher=joblib"]) is not None
