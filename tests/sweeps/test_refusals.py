"""What --multirun refuses before any job starts: one line, exit status 2, no job directory."""

from __future__ import annotations

import textwrap

from conftest import run_cli
from sweep_settings import ONE_THREAD, TINY

NO_WARNING_FILTER = {**ONE_THREAD, "PYTHONWARNINGS": ""}  # what a user sees (run_cli ignores warnings otherwise)


def refused(result, sweep) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert not sweep.exists()  # refused before Hydra made the sweep directory, let alone a job's
    return lines[0]


def test_joblib_with_a_ddp_trainer_is_refused_in_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("train", "--multirun", "hydra/launcher=joblib", "trainer=ddp_cpu", f"hydra.sweep.dir={sweep}",
                     *TINY, "seed=0,1", cwd=tmp_path, env=NO_WARNING_FILTER)
    line = refused(result, sweep)
    assert line.startswith("difflab-train: error: hydra/launcher=joblib runs each job in one worker process, but "
                           "trainer.devices x trainer.num_nodes = 2 asks for a DDP job")


def test_a_swept_ddp_trainer_is_found_among_the_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("train", "--multirun", "hydra/launcher=submitit_local", "trainer=cpu,ddp_cpu",
                     f"hydra.sweep.dir={sweep}", *TINY, cwd=tmp_path, env=NO_WARNING_FILTER)
    line = refused(result, sweep)
    assert "trainer.devices x trainer.num_nodes = 2 (job trainer=ddp_cpu)" in line


def test_a_missing_launcher_plugin_names_the_extra_that_installs_it(tmp_path):
    # hydra-joblib-launcher made unimportable: a package of the same name earlier on the path that fails to import
    broken = tmp_path / "shadow" / "hydra_plugins" / "hydra_joblib_launcher"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(textwrap.dedent('raise ImportError("No module named \'joblib\'")\n'))
    sweep = tmp_path / "sweep"
    result = run_cli("train", "--multirun", "hydra/launcher=joblib", f"hydra.sweep.dir={sweep}", *TINY, "seed=0,1",
                     cwd=tmp_path, env={**ONE_THREAD, "PYTHONPATH": str(tmp_path / "shadow")})
    line = refused(result, sweep)
    assert line == ("difflab-train: error: hydra/launcher=joblib: hydra-joblib-launcher cannot be imported "
                    "(No module named 'joblib'); install it with: pip install \"difflab[sweeps]\"")


def test_an_optimized_metric_the_run_does_not_log_is_refused_before_the_study_exists(tmp_path):
    sweep = tmp_path / "sweep"
    study = tmp_path / "study"
    result = run_cli("train", "--multirun", *TINY, "hparams_search=moons_optuna", "optimized_metric=val/w2",
                     f"hydra.sweep.dir={sweep}", f"hydra.sweeper.storage=sqlite:///{study / 'optuna.db'}",
                     cwd=tmp_path, env=NO_WARNING_FILTER)
    line = refused(result, sweep)
    assert line == ("difflab-train: error: optimized_metric='val/w2' is not logged by this run; choose monitor, one "
                    "of the scored metrics ['val/two_d_n200_dpmpp2m20'] or one of ['val/loss']")
    assert not study.exists()  # no study was created, no trial was asked for
