"""hydra/launcher=joblib: two jobs side by side, each with its share of the cores as torch threads."""

from __future__ import annotations

import os
import re

import pytest
import yaml
from conftest import run_cli
from sweep_settings import ONE_THREAD, TINY, job_dirs, scored, status


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.mark.slow  # ~40 s: the sweep's process and each loky worker import torch and Lightning
def test_two_joblib_jobs_finish_each_on_its_share_of_the_cores(tmp_path):
    """Default-run guard: test_launchers_unit.py::test_a_joblib_job_takes_its_share_of_the_cores_as_threads."""
    sweep = tmp_path / "sweep"
    result = run_cli("train", "--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     f"hydra.sweep.dir={sweep}", *TINY, "seed=0,1", cwd=tmp_path, env=ONE_THREAD, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    expected_threads = max(1, usable_cores() // 2)
    for k, job in enumerate(jobs):
        assert yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())[-1] == f"seed={k}"
        record = status(job)
        assert record["status"] == "finished" and record["step"] == 20
        assert len(scored(job)) == 2 and (job / "checkpoints" / "last.ckpt").is_file()
        threads = re.findall(r"joblib job (\d+): n_jobs=2 on \d+ cores: torch threads: (\d+)",
                             (job / "train.log").read_text())
        assert threads == [(str(k), str(expected_threads))]
