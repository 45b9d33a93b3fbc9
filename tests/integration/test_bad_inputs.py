"""Bad input is refused before any work: non-zero exit, one line naming the problem, nothing half written."""

from __future__ import annotations

import pytest
import torch
from cli_driver import run_commands
from conftest import code_running_pickle, compose_config

from difflab.train import train

TINY = ["dataset.batch_size=16", "backbone.base_channels=16", "backbone.num_groups=8", "backbone.num_res_blocks=1",
        "trainer.max_steps=2", "callbacks.rich_progress_bar=null", "metrics=[]",
        "callbacks.sample_grid.every_n_steps=100"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real difflab checkpoint of the TINY model (base_channels 16)."""
    from hydra.core.global_hydra import GlobalHydra

    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(compose_config("train", [*TINY, "callbacks.model_checkpoint.every_n_train_steps=2"], run))
    GlobalHydra.instance().clear()
    return run / "checkpoints" / "last.ckpt"


def bad_inputs(checkpoint, tmp_path) -> list[tuple[list[str], str]]:
    """(overrides, what the one-line message must say)."""
    not_difflab = tmp_path / "lightning_only.ckpt"
    torch.save({"state_dict": {}, "global_step": 3}, not_difflab)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    return [
        (["schedule.num_timesteps=1"], "schedule.num_timesteps=1 must be an integer >= 2"),
        (["schedule.beta_end=1.5"], "beta_end after rescaling by 1000/T = 1 is 1.5, outside (0, 1)"),
        (["schedule=polynomial", "schedule.beta_start=0.02", "schedule.beta_end=0.0001"],
         "beta_end=0.0001 must be greater than beta_start=0.02"),
        (["sampler.steps=2000"], "sampler.steps=2000 must be an integer in [1, 1000] (schedule.num_timesteps=1000)"),
        (["sampler.steps=0"], "sampler.steps=0 must be an integer in [1, 1000] (schedule.num_timesteps=1000)"),
        (["sampler.eta=-0.5"], "sampler.eta=-0.5 must be a number >= 0"),
        (["metrics=[fid]", "schedule.num_timesteps=10", "schedule.rescale_to_timesteps=false", "sampler.steps=10"],
         "evaluation.sampler.steps=20 must be an integer in [1, 10] (schedule.num_timesteps=10)"),
        (["dataset.image_size=12", "backbone=unet_small"],
         "attention_resolutions contains 8, but this U-Net only has resolutions [12, 6, 3]"),
        (["dataset=shapes"],
         "attention_resolutions contains 4, but this U-Net only has resolutions [16, 8] for image_size=16"),
        (["dataset.batch_size=0"], "dataset.batch_size=0 must be an integer >= 1"),
        (["metrics=[fid]", "metrics.fid.num_samples=1"], "metrics.fid.num_samples=1 must be an integer >= 2"),
        (["metrics=[fid]", "evaluation.reference.num_samples=5000"],
         "evaluation.reference.num_samples=5000 must lie in [2, 1437]"),
        (["metrics=[fid]", "features=inception"], "features=inception needs the Inception-v3 weights"),
        (["ema.decay=1.5"], "ema.decay=1.5 must be a number in [0, 1)"),
        (["conditioning.label_dropout=2"], "conditioning.label_dropout=2 must be a number in [0, 1)"),
        (["optim.optimizer.lr=-1"], "optim.optimizer: Invalid learning rate: -1"),
        (["objective.prediction_type=sample"],
         "objective.prediction_type='sample' is not known; choose one of ['eps', 'x0', 'v']"),
        (["sampler.timestep_spacing=middle"], "sampler.timestep_spacing='middle' is not known"),
        (["trainer.precision=64-bad"], "Precision '64-bad' is invalid"),
        (["evaluation.monitor_metric=precision"], "evaluation.monitor_metric='precision' cannot pick checkpoints"),
        (["resume=yes"], "resume='yes' is not accepted"),
        ([f"ckpt_path={tmp_path / 'missing.ckpt'}"], "missing.ckpt' does not exist or is not a file"),
        ([f"ckpt_path={not_difflab}"], "is not a difflab checkpoint"),
        ([f"ckpt_path={truncated}"], "is not a loadable checkpoint"),
        ([f"ckpt_path={checkpoint}", "backbone.base_channels=32"],
         "was trained with other model settings (backbone.base_channels: 16 -> 32"),
        (["ckpt_path=last"], "ckpt_path=last found no checkpoints/last.ckpt"),
        ([f"hydra.run.dir={blocker / 'run'}"],
         f"hydra.run.dir='{blocker / 'run'}' cannot be created: {blocker} is not a directory"),
    ]


def test_the_table_holds_every_case(tmp_path):
    """A case dropped by accident (a merge, a bad edit) shows here: the count changes only on purpose."""
    stand_in = tmp_path / "stand_in.ckpt"
    stand_in.write_bytes(b"\0" * 2000)
    cases = bad_inputs(stand_in, tmp_path)
    assert len(cases) == 27
    assert len({" ".join(overrides) for overrides, _ in cases}) == len(cases)  # no case twice


def test_a_table_of_bad_inputs_each_stops_early_with_one_line(checkpoint, tmp_path):
    """Every case runs ``difflab-train``'s entry point as the console script does, all in one process
    (cli_driver.py): its exit status, its standard error's last line, and the files it left."""
    cases = bad_inputs(checkpoint, tmp_path)
    commands = []
    for index, (overrides, _) in enumerate(cases):
        run_dir = ([o for o in overrides if o.startswith("hydra.run.dir=")]
                   or [f"hydra.run.dir={tmp_path / f'run{index}'}"])
        commands.append(["train", *TINY, *[o for o in overrides if not o.startswith("hydra.run.dir=")], *run_dir])
    outcomes = run_commands(commands, tmp_path, env={"TORCH_HOME": str(tmp_path / "torch")})
    problems = []
    for index, ((overrides, expected), outcome) in enumerate(zip(cases, outcomes)):
        lines = outcome.stderr.strip().splitlines()
        last = lines[-1] if lines else ""
        if (outcome.returncode == 0 or not last.startswith("difflab-train: error:") or expected not in last
                or "Traceback" in outcome.stderr):
            problems.append(f"{overrides}: exit {outcome.returncode}, last line {last!r}")
        run_dir = tmp_path / f"run{index}"
        if (run_dir / "checkpoints").exists() or list(run_dir.glob("**/*.ckpt")) or list(run_dir.glob("**/*.tmp")):
            problems.append(f"{overrides}: left files behind in {run_dir}")
        print(f"exit {outcome.returncode}  {' '.join(overrides)[:60]:60s} {last[:150]}")
    assert not problems, "\n".join(problems)


def test_a_checkpoint_that_would_run_code_is_refused_not_executed(tmp_path):
    """difflab-train, difflab-sample and difflab-evaluate, each through its entry point (cli_driver.py)."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(code_running_pickle(marker, "difflab"))
    programs = [("train", TINY), ("sample", []), ("evaluate", [])]
    outcomes = run_commands([[program, *extra, f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / program}"]
                             for program, extra in programs], tmp_path)
    for (program, _), result in zip(programs, outcomes):
        assert result.returncode == 2, (program, result.stderr[-2000:])
        assert result.stderr.strip().splitlines()[-1].startswith(
            f"difflab-{program}: error: ckpt_path={str(evil)!r} is not a loadable checkpoint"), result.stderr[-2000:]
        assert not marker.exists()
