"""Reading the jobs of a sweep: status, step, error, and every logged value (resumed, running, legacy jobs)."""

from __future__ import annotations

import pytest
from fake_sweeps import LOSS, W2, evaluation_sweep, training_sweep, write_csv, write_job

from difflab.reporting.grouping import swept_keys
from difflab.reporting.jobs import find_jobs, read_job
from difflab.reporting.series import read_csv_file
from difflab.utils.metric_names import higher_is_better, short_name


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "train_sweep"
    return root, training_sweep(root)


def test_every_job_is_found_in_natural_order(tmp_path):
    for name in ("2", "10", "1"):
        write_job(tmp_path / "s" / name, ["seed=0"])
    (tmp_path / "s" / "1" / "checkpoints" / "nested" / ".hydra").mkdir(parents=True)  # not entered
    write_job(tmp_path / "s" / "1" / "samples" / "x", ["seed=1"])  # inside a job: not a job of its own
    assert [p.name for p in find_jobs([tmp_path / "s"])] == ["1", "2", "10"]
    assert find_jobs([tmp_path / "s" / "2"]) == [(tmp_path / "s" / "2").resolve()]  # a single run dir
    assert len(find_jobs([tmp_path])) == 3  # a parent folder of sweeps


def test_status_step_error_and_values_match_the_files(sweep):
    root, truth = sweep
    jobs = {job.path.name: job for job in map(read_job, find_jobs([root]))}
    assert sorted(jobs) == sorted(truth)
    for name, expected in truth.items():
        job = jobs[name]
        assert (job.status, job.step, job.error) == (expected["status"], expected["step"], expected["error"]), name
        for metric, points in expected["series"].items():
            assert job.series.get(metric, {}) == pytest.approx(points), (name, metric)
            assert job.last(metric) == (points[max(points)] if points else None)
            assert job.best(metric) == (min(points.values()) if points else None)


def test_a_resumed_job_merges_its_csv_files_the_later_winning(sweep):
    root, truth = sweep
    job = read_job(root / "1")
    loss = truth["1"]["series"][LOSS]
    assert job.series[LOSS] == loss  # step 10 from metrics.1.csv only; 20, 30 from metrics.csv, not the stale ones
    assert job.best(LOSS) == 0.05 == loss[10]
    assert job.series[W2][20] == truth["1"]["series"][W2][20]


def test_a_half_written_last_line_is_not_read(tmp_path):
    path = tmp_path / "metrics.csv"
    write_csv(path, [{"epoch": 0, "step": 10, LOSS: "0.5"}, {"epoch": 0, "step": 20, LOSS: "0.123456789"}], [LOSS],
              truncate_last=True)
    assert read_csv_file(path) == {LOSS: {10: 0.5}}


def test_evaluation_jobs_read_results_json(tmp_path):
    truth = evaluation_sweep(tmp_path / "ev")
    jobs = {job.path.name: job for job in map(read_job, find_jobs([tmp_path / "ev"]))}
    for name, expected in truth.items():
        job = jobs[name]
        assert job.task == "evaluate"
        assert job.status == expected["status"] and job.error == expected["error"]
        assert job.last("val/two_d") == expected["value"]
        assert job.setting("sampler.steps") == str(expected["steps"])
    assert jobs["0"].step == 3000


def test_swept_keys_leave_out_resume_and_hydra_but_count_checkpoints(tmp_path):
    for i, (schedule, seed) in enumerate([("linear", 0), ("cosine", 1)]):
        write_job(tmp_path / str(i), [f"schedule={schedule}", f"seed={seed}", "trainer.max_steps=5",
                                      f"ckpt_path=/c/{i}.ckpt", f"resume={'auto' if i else 'null'}",
                                      f"hydra.job.name=n{i}", f"+extra.{i}=1"])
    jobs = [read_job(p) for p in find_jobs([tmp_path])]
    assert swept_keys(jobs) == ["schedule", "seed", "extra.0", "extra.1"]  # training jobs: ckpt_path resumes a run
    assert swept_keys(jobs, ["trainer.max_steps"]) == ["schedule", "seed", "extra.0", "extra.1", "trainer.max_steps"]
    for i in range(2):  # evaluation jobs: ckpt_path is the checkpoint scored, a setting compared
        overrides = [f"ckpt_path=/c/{i}.ckpt", "sampler.steps=10", "hydra/launcher=joblib",
                     f"logger={['csv', 'wandb'][i]}"]
        write_job(tmp_path / "eval" / str(i), overrides, {"task": "evaluate", "overrides": overrides,
                                                          "status": "finished", "step": 5})
    assert swept_keys([read_job(p) for p in find_jobs([tmp_path / "eval"])]) == ["ckpt_path"]


def test_a_key_set_in_one_sweep_is_read_from_the_others_config(tmp_path):
    """Two sweeps, one overriding schedule and one not: the other's value comes from its chosen config group."""
    write_job(tmp_path / "a" / "0", ["schedule=cosine"])
    write_job(tmp_path / "b" / "0", ["seed=0"])
    (tmp_path / "b" / "0" / ".hydra" / "hydra.yaml").write_text("hydra:\n  runtime:\n    choices:\n"
                                                                "      schedule: linear\n")
    (tmp_path / "b" / "0" / "resolved_config.yaml").write_text("seed: 0\nschedule:\n  num_timesteps: 1000\n")
    job = read_job(tmp_path / "b" / "0")
    assert (job.setting("schedule"), job.setting("schedule.num_timesteps"), job.setting("nope")) == \
        ("linear", "1000", None)
    jobs = [read_job(p) for p in find_jobs([tmp_path])]
    assert swept_keys(jobs) == ["schedule", "seed"]  # seed: 0 in b, unset in a


def test_direction_and_short_names():
    assert [higher_is_better(m) for m in ("val/inception_score_inception_n5000_ddim50", "val/precision_x",
                                          "val/recall_x", "val/accuracy", "val/fid_x", "train/loss")] == \
        [True, True, True, True, False, False]
    assert short_name("val/fid_digits-lenet_n1000_ddim50") == "fid"
    assert short_name("val/two_d_n1000_dpmpp2m20") == "two_d"


def test_a_job_just_started_or_half_written_is_incomplete_not_an_error(tmp_path):
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("")  # being written by Hydra
    write_job(tmp_path / "1", ["seed=1"])
    (tmp_path / "1" / "status.json").write_text('{"task": "train", "status": "fin')  # cut short
    (tmp_path / "1" / "evaluation.json").write_text('{"history": [[10, {"val/x": 0.')
    (tmp_path / "1" / "csv").mkdir()
    (tmp_path / "1" / "csv" / "metrics.csv").write_text("")
    jobs = [read_job(p) for p in find_jobs([tmp_path])]
    assert [(j.status, j.step, j.error, j.overrides, j.series) for j in jobs] == [
        ("incomplete", None, None, {}, {}), ("incomplete", None, None, {"seed": "1"}, {})]
