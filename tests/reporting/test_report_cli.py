"""The difflab-report command line: --help, bad input in one line with exit status 2, what a run writes (and does
not)."""

from __future__ import annotations

from conftest import run_cli
from fake_sweeps import training_sweep


def test_help_lists_the_options_with_examples(tmp_path):
    result = run_cli("report", "--help", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    for text in ("sweeps=", "select", "group_by", "out_dir", "figures", "Examples:", "report.csv", "report.md",
                 "curve_<metric>.png", "status.json", "paired_by", "paired.csv", "train.<key>"):
        assert text in result.stdout, text
    assert "powered by Hydra" not in result.stdout


def test_bad_input_is_one_line_and_exit_status_2(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [(f"sweeps={tmp_path / 'nope'}", f"sweeps: {tmp_path / 'nope'} does not exist; expected a sweep"),
             (f"sweeps={tmp_path / 'empty'}", f"sweeps: {tmp_path / 'empty'} holds no job"),
             ("metrics=[val/fid*]", "metrics is difflab's config group of scored metrics, not an option of the "
                                    "report; choose the reported metrics with select=")]
    for arg, message in cases:
        result = run_cli("report", arg, cwd=tmp_path, timeout=120)
        assert result.returncode == 2, (arg, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("difflab-report: error: ") and message in lines[0], lines


def test_a_report_writes_only_its_files(tmp_path):
    sweep = tmp_path / "sweep"
    training_sweep(sweep)
    before = {p for p in tmp_path.rglob("*")}
    result = run_cli("report", f"sweeps={sweep}", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    new = {p.relative_to(tmp_path).as_posix() for p in set(tmp_path.rglob("*")) - before}
    assert new == {"sweep/report.csv", "sweep/report.md", "sweep/curve_train-loss.png",
                   "sweep/curve_val-two_d_n1000_dpmpp2m20.png"}  # no .hydra/, no log, no outputs/ run dir
    assert "| schedule | finished |" in result.stdout and str(sweep / "report.md") in result.stdout
