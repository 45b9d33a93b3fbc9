"""A preset made for another command (preset_for: evaluate) is refused in one line, before anything runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli_driver import run_commands
from conftest import compose_config
from omegaconf import OmegaConf

from difflab.configs import preset_refusal

RUNS = {"multirun": ["-m", "experiment=ddim_table1"], "single run": ["experiment=ddim_table1"]}


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Each of RUNS through difflab-train's entry point (both in one process, cli_driver.py), in a directory of its
    own: the directory and the outcome."""
    root = tmp_path_factory.mktemp("presets")
    for name in RUNS:
        (root / name).mkdir()
    outcomes = run_commands([["train", *args, "trainer.max_steps=1", f"paths.root_dir={root / name}"]
                             for name, args in RUNS.items()], root)
    return {name: (root / name, outcome) for name, outcome in zip(RUNS, outcomes)}


@pytest.mark.parametrize("run", RUNS)
def test_an_evaluation_preset_is_refused_by_difflab_train(run, refused):
    root, done = refused[run]
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "difflab-train: error: experiment=ddim_table1 is a difflab-evaluate preset (preset_for: evaluate); run it "
        "with difflab-evaluate -m experiment=ddim_table1")
    assert not (root / "outputs" / "train").exists() or not list((root / "outputs" / "train").rglob("*.ckpt"))


def test_presets_without_preset_for_or_for_their_own_command_pass(tmp_path, hydra_cleanup):
    assert preset_refusal(OmegaConf.create({"preset_for": "evaluate"}), "evaluate") is None
    assert preset_refusal(OmegaConf.create({}), "train") is None
    cfg = compose_config("train", ["experiment=moons_ten_steps"], tmp_path)
    assert preset_refusal(cfg, "train") is None
