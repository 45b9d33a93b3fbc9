"""The digits studies end to end at tiny settings: experiment=noise_schedules trains the checkpoints (the linear arm's
are the ones the DDIM study scores), experiment=ddim_table1 / ddim_table1_sigma_hat score them, difflab-report makes
the tables and figures, and the lesson's figure script draws from two of the checkpoints."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import REPO_ROOT, run_cli
from study_scripts import load_script

# about 100 s of one worker: behind -m slow (the two-moons study's test, in the default run, covers the sweep ->
# collected runs -> paired report -> figures pipeline; tests/integration/test_evaluation_names.py the evaluation sweeps)
pytestmark = pytest.mark.slow

TINY_TRAIN = ["seed=0,1,2", "schedule=linear,cosine", "dataset.batch_size=16", "backbone.base_channels=16",
              "backbone.num_groups=8", "backbone.num_res_blocks=1", "trainer.max_steps=2",
              "trainer.val_check_interval=2", "metrics=[]", "callbacks.rich_progress_bar=null",
              "callbacks.sample_grid.every_n_steps=100", "callbacks.model_checkpoint.every_n_train_steps=2"]
TINY_SCORING = ["metrics=[fid]", "metrics.fid.num_samples=20", "batch_size=20"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A directory whose outputs/train/sweeps/noise_schedules holds the tiny training sweep (jobs 0-2: linear)."""
    root = tmp_path_factory.mktemp("studies")
    done = run_cli("train", "-m", "experiment=noise_schedules", *TINY_TRAIN, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root



def test_noise_schedules_trains_its_arms_and_reports_them_paired(root):
    sweep = root / "outputs" / "train" / "sweeps" / "noise_schedules"
    records = [json.loads((sweep / str(i) / "status.json").read_text()) for i in range(6)]
    assert [r["status"] for r in records] == ["finished"] * 6
    assert [[o for o in r["overrides"] if o.startswith(("schedule", "seed"))] for r in records] == [
        [f"schedule={s}", f"seed={k}"] for s in ("linear", "cosine") for k in range(3)]
    done = run_cli("report", f"sweeps={sweep}", "select=[val/loss]", "paired_by=seed", "name=results",
                   f"out_dir={root / 'report'}", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    paired = list(csv.DictReader(open(root / "report" / "paired.csv")))
    assert [(r["key"], r["a"], r["b"], r["n"]) for r in paired] == [("schedule", "linear", "cosine", "3")]


def test_ddim_table1_scores_the_linear_checkpoints_against_both_splits(root):
    common = [*TINY_SCORING, "sampler.steps=2,4"]
    for preset, axes in (("ddim_table1", ["sampler.eta=0,1"]), ("ddim_table1_sigma_hat", [])):
        done = run_cli("evaluate", "-m", f"experiment={preset}", *common, *axes, cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads((root / "outputs" / "evaluate" / "sweeps" / "ddim_table1" / "results.json").read_text())
    assert len(table) == 2 * 2 * 3  # S x eta x checkpoints
    assert {r["ckpt_path"].split("noise_schedules/")[1] for r in table} == {
        f"{k}/checkpoints/last.ckpt" for k in range(3)}
    names = {n for r in table for n in json.loads(r["metric_names"])}
    assert names == {f"val/fid_digits-lenet_n20_ddim{s}{e}{ref}" for s in (2, 4) for e in ("", "-eta1")
                     for ref in ("", "_refval")}
    sigma_hat = json.loads(
        (root / "outputs" / "evaluate" / "sweeps" / "ddim_table1_sigma_hat" / "results.json").read_text())
    assert {n for r in sigma_hat for n in json.loads(r["metric_names"])} == {
        f"val/fid_digits-lenet_n20_ddpm{s}-large{ref}" for s in (2, 4) for ref in ("", "_refval")}

    out = root / "ddim_report"
    sweeps = root / "outputs" / "evaluate" / "sweeps"
    done = run_cli("report", f"sweeps=[{sweeps / 'ddim_table1'},{sweeps / 'ddim_table1_sigma_hat'}]",
                   "select=[val/fid*]", "group_by=[sampler.name,sampler.eta,sampler.steps]", "paired_by=ckpt_path",
                   "name=results", f"out_dir={out}", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(csv.DictReader(open(out / "results.csv")))) == 12 + 6
    assert (out / "vs_sampler.steps_val-fid.png").is_file() and (out / "vs_sampler.steps_val-fid_refval.png").is_file()


def test_the_lesson_figures_draw_from_two_checkpoints(root, tmp_path):
    lesson = load_script(REPO_ROOT / "experiments" / "lesson_exercises" / "figures.py", "lesson_figures")
    sweep = root / "outputs" / "train" / "sweeps" / "noise_schedules"
    linear, cosine = (lesson.load(sweep / k / "checkpoints" / "last.ckpt") for k in ("0", "3"))
    written = [lesson.forward_process(tmp_path, num_digits=2), *lesson.ddpm_vs_ddim(linear, tmp_path, n=4, follow=2),
               lesson.low_steps(linear, cosine, tmp_path, n=4, steps=(2, 5))]
    assert [p.name for p in written] == ["forward_process.png", "ddpm1000_vs_ddim50.png", "trajectory_ddpm1000.png",
                                         "trajectory_ddim50.png", "low_steps.png"]
    assert all(p.stat().st_size > 1000 for p in written)
