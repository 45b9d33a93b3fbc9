"""A preset made for another command (preset_for: evaluate) is refused in one line, before anything runs."""

from __future__ import annotations

import pytest
from conftest import compose_config, run_cli
from omegaconf import OmegaConf

from difflab.configs import preset_refusal


@pytest.mark.parametrize("args", [["-m", "experiment=ddim_table1"], ["experiment=ddim_table1"]],
                         ids=["multirun", "single run"])
def test_an_evaluation_preset_is_refused_by_difflab_train(args, tmp_path):
    done = run_cli("train", *args, "trainer.max_steps=1", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "difflab-train: error: experiment=ddim_table1 is a difflab-evaluate preset (preset_for: evaluate); run it "
        "with difflab-evaluate -m experiment=ddim_table1")
    assert not (tmp_path / "outputs" / "train").exists() or not list((tmp_path / "outputs" / "train").rglob("*.ckpt"))


def test_presets_without_preset_for_or_for_their_own_command_pass(tmp_path, hydra_cleanup):
    assert preset_refusal(OmegaConf.create({"preset_for": "evaluate"}), "evaluate") is None
    assert preset_refusal(OmegaConf.create({}), "train") is None
    cfg = compose_config("train", ["experiment=moons_ten_steps"], tmp_path)
    assert preset_refusal(cfg, "train") is None
