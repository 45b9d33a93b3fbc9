"""hydra/launcher=submitit_local: two jobs as separate processes, outputs in their job directories, submitit's logs
under the sweep's .submitit/ and linked from each job directory."""

from __future__ import annotations

import pytest
import yaml
from conftest import run_cli
from sweep_settings import ONE_THREAD, TINY, job_dirs, scored, status


@pytest.mark.slow  # ~40 s: the sweep's process and each job's import torch and Lightning
def test_two_submitit_local_jobs_finish_in_their_job_directories(tmp_path):
    """Default-run guard: test_launchers_unit.py::test_a_submitit_job_links_its_logs_and_takes_its_cpus_as_threads."""
    sweep = tmp_path / "sweep"
    result = run_cli("train", "--multirun", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}", *TINY,
                     "seed=0,1", cwd=tmp_path, env=ONE_THREAD, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    log_folders = set()
    for k, job in enumerate(jobs):
        assert yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())[-1] == f"seed={k}"
        record = status(job)
        assert record["status"] == "finished" and record["step"] == 20 and record["overrides"][-1] == f"seed={k}"
        assert len(scored(job)) == 2 and (job / "checkpoints" / "last.ckpt").is_file()
        assert (job / "resolved_config.yaml").is_file() and yaml.safe_load(
            (job / "resolved_config.yaml").read_text())["seed"] == k
        # submitit's own files: <sweep>/.submitit/<job id>/<job id>_0_log.{out,err}, linked as <job>/submitit_logs
        link = job / "submitit_logs"
        assert link.is_symlink()
        folder = link.resolve()
        assert folder.parent == (sweep / ".submitit").resolve()
        outs = sorted(folder.glob("*_0_log.out")) + sorted(folder.glob("*_0_log.err"))
        assert len(outs) == 2
        # the job's own output went there: Lightning's and difflab's lines name this job's run directory
        assert f"run directory {job}" in outs[0].read_text() + outs[1].read_text()
        log_folders.add(folder)
    assert len(log_folders) == 2
