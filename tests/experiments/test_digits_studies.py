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


def evaluate_preset(root, preset: str, *args: str) -> list[dict]:
    """Run the evaluation preset at tiny settings in ``root``; its sweep's result rows."""
    done = run_cli("evaluate", "-m", f"experiment={preset}", *args, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((root / "outputs" / "evaluate" / "sweeps" / preset / "results.json").read_text())


def checkpoints(root, *sweeps: tuple[str, tuple[int, ...]]) -> str:
    """``ckpt_path=a,b,...``: the last checkpoints of these jobs of these training sweeps, in order."""
    runs = root / "outputs" / "train" / "sweeps"
    return "ckpt_path=" + ",".join(str(runs / sweep / str(k) / "checkpoints" / "last.ckpt")
                                   for sweep, jobs in sweeps for k in jobs)


def report(root, name: str, sweeps: list[str], *options: str) -> list[dict]:
    out = root / f"{name}_report"
    paths = ",".join(str(root / "outputs" / "evaluate" / "sweeps" / s) for s in sweeps)
    done = run_cli("report", f"sweeps=[{paths}]", *options, "name=results", f"out_dir={out}", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(out.glob("vs_*.png")) or list(out.glob("groups_*.png")), "no figure"
    return list(csv.DictReader(open(out / "results.csv")))


def test_noise_schedules_scores_fid_against_steps_and_the_likelihood_by_schedule(root):
    fid = evaluate_preset(root, "noise_schedules_eval", *TINY_SCORING, "sampler.steps=2,4",
                          checkpoints(root, ("noise_schedules", (0, 1, 3, 4))))
    assert [(r["sampler.name"], r["nfe"]) for r in fid] == [("ddim", 2)] * 4 + [("ddim", 4)] * 4
    nll = evaluate_preset(root, "noise_schedules_nll", "metrics.nll.max_batches=1",
                          checkpoints(root, ("noise_schedules", (0, 1, 3, 4))))
    assert all(json.loads(r["metric_names"])[0].startswith("val/nll_bpd_n") for r in nll) and len(nll) == 4
    rows = report(root, "schedules", ["noise_schedules_eval", "noise_schedules_nll"], "select=[val/fid,val/nll*]",
                  "group_by=[train.schedule.name,sampler.name,sampler.steps]", "paired_by=train.seed")
    assert {(r["train.schedule.name"], r["train.seed"]) for r in rows} == {
        (s, str(k)) for s in ("linear", "cosine") for k in (0, 1)}  # read from each job's trained_config.yaml


def test_samplers_at_equal_cost_record_their_model_evaluations(root):
    ckpt = checkpoints(root, ("noise_schedules", (0,)))
    rows = evaluate_preset(root, "samplers_equal_cost", *TINY_SCORING, "sampler.steps=2,3", ckpt)
    rows += evaluate_preset(root, "samplers_equal_cost_heun", *TINY_SCORING, "sampler.steps=2", ckpt)
    rows += evaluate_preset(root, "samplers_equal_cost_ddpm", *TINY_SCORING, "sampler.steps=4", ckpt)
    assert [(r["sampler.name"], r.get("sampler.karras_sigmas"), r["nfe"]) for r in rows] == [
        ("ddim", None, 2), ("euler", True, 2), ("dpmpp_2m", None, 2), ("ddim", None, 3), ("euler", True, 3),
        ("dpmpp_2m", None, 3), ("heun", True, 3), ("ddpm", None, 4)]
    cosine = evaluate_preset(root, "samplers_equal_cost_cosine", *TINY_SCORING, "sampler.steps=2",
                             checkpoints(root, ("noise_schedules", (3,))))
    assert [r["sampler.clip_sample"] for r in cosine] == [False, True]
    table = report(root, "samplers", ["samplers_equal_cost", "samplers_equal_cost_heun", "samplers_equal_cost_ddpm"],
                   "select=[val/fid]", "group_by=[sampler.name,nfe]")
    assert sorted((r["sampler.name"], r["nfe"]) for r in table) == sorted(
        [(s, n) for s in ("ddim", "euler", "dpmpp_2m") for n in ("2", "3")] + [("heun", "3"), ("ddpm", "4")])


def test_objectives_train_and_score_fid_and_likelihood_per_objective(root):
    train = [o for o in TINY_TRAIN if not o.startswith(("seed=", "schedule="))]
    done = run_cli("train", "-m", "experiment=objectives", "seed=0", *train, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    scoring = [*TINY_SCORING, "sampler.steps=2", "metrics.nll.max_batches=1"]
    fixed = evaluate_preset(root, "objectives_eval", *scoring, "metrics=[fid,nll]",
                            checkpoints(root, ("noise_schedules", (0,)), ("objectives", (0, 1))))
    learned = evaluate_preset(root, "objectives_eval_learned", *scoring, "metrics=[fid,nll]",
                              checkpoints(root, ("objectives", (2,))))
    assert [r["sampler.variance_type"] for r in fixed + learned] == ["fixed_small"] * 3 + ["learned_range"]
    rows = report(root, "objectives", ["objectives_eval", "objectives_eval_learned"], "select=[val/fid,val/nll*]",
                  "group_by=[train.objective.prediction_type,train.objective.learn_variance]")
    assert sorted((r["train.objective.prediction_type"], r["train.objective.learn_variance"]) for r in rows) == [
        ("eps", "false"), ("eps", "true"), ("v", "false"), ("x0", "false")]
