"""difflab-report on hand-written sweeps: report.csv, report.md and the figures against values computed here
from the truth the files were written from."""

from __future__ import annotations

import csv
import re

import pytest
from fake_sweeps import LOSS, W2, assert_cell, assert_png, evaluation_sweep, md_table, training_sweep
from omegaconf import OmegaConf

from difflab.errors import ConfigError
from difflab.report import report


def run_report(**options):
    cfg = OmegaConf.create({"sweeps": None, "select": ["val/*", "train/loss"], "group_by": None, "out_dir": None,
                            "figures": True, **options})
    return report(cfg)


@pytest.fixture
def train_sweep(tmp_path):
    root = tmp_path / "train_sweep"
    return root, training_sweep(root)


def test_report_csv_has_one_row_per_job_with_last_and_best(train_sweep):
    root, truth = train_sweep
    out = run_report(sweeps=str(root))
    assert out["out_dir"] == root and out["swept"] == ["schedule", "seed"] and out["group_by"] == ["schedule"]
    with open(root / "report.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = {row["job"]: row for row in reader}
    assert reader.fieldnames == ["job", "status", "step", "error", "schedule", "seed", W2, f"{W2}/best", LOSS,
                                 f"{LOSS}/best"]
    assert sorted(rows) == sorted(truth)
    for name, expected in truth.items():
        row = rows[name]
        assert (row["status"], int(row["step"]), row["error"] or None) == \
            (expected["status"], expected["step"], expected["error"])
        assert (row["schedule"], int(row["seed"])) == (expected["schedule"], expected["seed"])
        for metric, points in expected["series"].items():
            if not points:
                assert row[metric] == row[f"{metric}/best"] == ""
                continue
            assert float(row[metric]) == points[max(points)]
            assert float(row[f"{metric}/best"]) == min(points.values())


def test_report_md_groups_means_over_finished_seeds_and_lists_the_others(train_sweep):
    root, truth = train_sweep
    run_report(sweeps=str(root))
    text = (root / "report.md").read_text()
    final = md_table(text, "Final values")
    assert [row["schedule"] for row in final] == ["linear", "cosine"]
    for row in final:
        group = [t for t in truth.values() if t["schedule"] == row["schedule"]]
        finished = [t for t in group if t["status"] == "finished"]
        assert row["finished"] == f"{len(finished)} of {len(group)}"
        for metric in (W2, LOSS):
            assert_cell(row[metric], [t["series"][metric][max(t["series"][metric])] for t in finished])
    best = md_table(text, "Best value during training")
    for row in best:
        finished = [t for t in truth.values() if t["schedule"] == row["schedule"] and t["status"] == "finished"]
        assert_cell(row[LOSS], [min(t["series"][LOSS].values()) for t in finished])
    left_out = {row["job"]: row for row in md_table(text, "Failed and incomplete jobs")}
    expected = {name: t for name, t in truth.items() if t["status"] != "finished"}
    assert sorted(left_out) == sorted(expected) == ["2", "5", "6"]
    for name, t in expected.items():
        assert (left_out[name]["status"], int(left_out[name]["step"])) == (t["status"], t["step"])
        assert left_out[name]["error"] == (t["error"] or "")
        assert left_out[name]["group"] == f"schedule={t['schedule']}"


def test_figures_are_written_and_linked(train_sweep):
    root, _ = train_sweep
    out = run_report(sweeps=str(root))
    names = sorted(p.name for p in out["written"] if p.suffix == ".png")
    assert names == ["curve_train-loss.png", "curve_val-two_d_n1000_dpmpp2m20.png"]  # schedule is not numeric
    text = (root / "report.md").read_text()
    for name in names:
        assert_png(root / name)
        assert f"]({name})" in text


def test_evaluation_sweep_groups_by_sampler_steps_with_n1_and_error_bars(tmp_path):
    root = tmp_path / "eval_sweep"
    truth = evaluation_sweep(root)
    out = run_report(sweeps=str(root))
    assert out["swept"] == ["sampler.steps", "seed"] and out["metrics"] == ["val/two_d"]  # one checkpoint
    final = md_table((root / "report.md").read_text(), "Final values")
    assert [row["sampler.steps"] for row in final] == ["10", "20", "40"]
    for row in final:
        values = [t["value"] for t in truth.values() if str(t["steps"]) == row["sampler.steps"] and t["value"]]
        assert_cell(row["val/two_d"], values)
    assert final[2]["val/two_d"].endswith("(n=1)") and "±" not in final[2]["val/two_d"]
    left_out = md_table((root / "report.md").read_text(), "Failed and incomplete jobs")
    assert [(r["job"], r["status"], r["error"]) for r in left_out] == [("5", "failed", "CUDA out of memory")]
    assert [p.name for p in out["written"] if p.suffix == ".png"] == ["vs_sampler.steps_val-two_d.png"]
    assert_png(root / "vs_sampler.steps_val-two_d.png")


def test_a_parent_folder_of_sweeps_and_explicit_options(tmp_path):
    training_sweep(tmp_path / "train_sweep")
    evaluation_sweep(tmp_path / "eval_sweep")
    out = run_report(sweeps=str(tmp_path), select=["val/two_d*"], group_by=[], out_dir=str(tmp_path / "rep"),
                     figures=False)
    assert len(out["jobs"]) == 13 and out["metrics"] == ["val/two_d", W2]
    with open(tmp_path / "rep" / "report.csv", newline="") as handle:
        assert {row["job"] for row in csv.DictReader(handle)} >= {"../train_sweep/0", "../eval_sweep/5"}
    (row,) = md_table((tmp_path / "rep" / "report.md").read_text(), "Final values")
    assert row["finished"] == "9 of 13" and row["val/two_d"].endswith("(n=5)") and row[W2].endswith("(n=4)")
    assert not list((tmp_path / "rep").glob("*.png"))


def test_two_sweeps_default_to_their_common_parent(tmp_path):
    training_sweep(tmp_path / "a" / "s1")
    training_sweep(tmp_path / "a" / "s2", seed=5)
    out = run_report(sweeps=[str(tmp_path / "a" / "s1"), str(tmp_path / "a" / "s2")], figures=False)
    assert out["out_dir"] == (tmp_path / "a").resolve() and len(out["jobs"]) == 14
    assert (tmp_path / "a" / "report.md").is_file()


@pytest.mark.parametrize(("options", "message"), [
    ({"sweeps": "{tmp}/nope"}, "sweeps: {tmp}/nope does not exist"),
    ({"sweeps": "{tmp}"}, "sweeps: {tmp} holds no job"),
    ({"sweeps": None}, "sweeps is required"),
    ({"sweeps": "{sweep}", "select": ["val/fid*"]}, "select=[val/fid*] matches none of the logged metrics"),
    ({"sweeps": "{sweep}", "group_by": ["sampler.steps"]}, "group_by: sampler.steps is set by none of the 7 jobs"),
])
def test_bad_input_is_one_config_error(tmp_path, options, message):
    sweep = tmp_path / "s"
    training_sweep(sweep)
    (tmp_path / "empty").mkdir()
    fill = {"tmp": tmp_path / "empty" if "holds no job" in message else tmp_path, "sweep": sweep}
    options = {k: v.format(**fill) if isinstance(v, str) else v for k, v in options.items()}
    with pytest.raises(ConfigError, match=re.escape(message.format(**fill))):
        run_report(**options)


def test_empty_or_malformed_options_are_refused_before_anything_is_written(train_sweep):
    root, _ = train_sweep
    from difflab.errors import ConfigError

    for options, message in [({"sweeps": ""}, "holds an empty path"),
                             ({"sweeps": str(root), "select": []}, "select=[] selects no metric"),
                             ({"sweeps": str(root), "figures": "maybe"}, "figures='maybe' is not accepted")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            run_report(**options)
    assert not (root / "report.csv").exists()
