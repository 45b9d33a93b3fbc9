"""The data facts (shape, classes, quantisation levels) are stated by the data modules only: the configs hold what a
user chooses, the model is sized from the facts, and a checkpoint's config records them to rebuild its model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import compose_config, run_cli

from difflab.builders import build_datamodule, build_module, to_container
from difflab.checkpoints import load_checkpoint, module_from_checkpoint
from difflab.configs import CONFIG_DIR
from difflab.data import DataFacts, DigitsDataModule, MoonsDataModule, ShapesDataModule, data_facts
from difflab.module import CHECKPOINT_KEY
from difflab.resume import config_mismatches
from difflab.samplers import make_sampler
from difflab.train import train

CONF = Path(CONFIG_DIR)
FACT_KEYS = {"channels", "num_classes", "data_dim", "num_bins"}
CHOSEN = {"shapes": {"channels"}, "image_folder": {"channels"}}  # the facts a user chooses for these datasets

# Two optimizer steps of a small network, one checkpoint, nothing scored.
TWO_STEPS = ["trainer.max_steps=2", "dataset.batch_size=16", "callbacks.rich_progress_bar=null", "metrics=[]",
             "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.sample_grid.every_n_steps=100",
             "sampler.steps=2"]


@pytest.mark.parametrize(
    ("datamodule", "expected"),
    [
        (DigitsDataModule(), DataFacts((1, 8, 8), num_classes=10, num_bins=17)),
        (DigitsDataModule(image_size=16), DataFacts((1, 16, 16), num_classes=10, num_bins=17)),
        (MoonsDataModule(), DataFacts((2,), num_classes=2, num_bins=None)),
        (ShapesDataModule(channels=3, image_size=12), DataFacts((3, 12, 12), num_classes=2, num_bins=None)),
    ],
    ids=["digits", "digits16", "moons", "shapes_rgb12"],
)
def test_each_data_module_states_its_facts(datamodule, expected):
    assert data_facts(datamodule) == expected
    assert data_facts(expected) is expected
    assert DataFacts.from_config(expected.as_config()) == expected


def test_data_facts_are_checked():
    for bad, key in [(dict(shape=()), "shape"), (dict(shape=(1, 0, 8)), "shape"),
                     (dict(shape=(2,), num_classes=0), "num_classes"), (dict(shape=(2,), num_bins=1), "num_bins"),
                     (dict(shape=(2,), num_classes=True), "num_classes")]:
        with pytest.raises(ValueError, match=key):
            DataFacts(**bad)


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "dataset").glob("*.yaml")))
def test_dataset_configs_hold_only_what_a_user_chooses(name):
    node = yaml.safe_load((CONF / "dataset" / f"{name}.yaml").read_text())
    assert set(node) & FACT_KEYS == CHOSEN.get(name, set())
    assert ("image_size" in node) == (name not in ("moons", "cifar10"))  # fixed there: [2] points, 32x32 images


def test_backbone_configs_do_not_read_the_dataset():
    for path in (CONF / "backbone").glob("*.yaml"):
        node = yaml.safe_load(path.read_text())
        assert ("${dataset." not in path.read_text()
                and not set(node) & {"in_channels", "image_size", "data_dim", "num_classes"}), path


def test_cfg_job_shows_no_fact_under_dataset(tmp_path):
    result = run_cli("train", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    dataset = yaml.safe_load(result.stdout)["dataset"]
    assert dataset["name"] == "digits" and dataset["image_size"] == 8 and not set(dataset) & FACT_KEYS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["backbone=mlp"],
         "backbone difflab.backbones.MLP takes vectors [D], but dataset=digits gives data of shape [1, 8, 8]"),
        (["dataset=moons"],
         "backbone difflab.backbones.UNet takes square images [C, S, S], but dataset=moons gives data of shape [2]"),
    ],
)
def test_a_backbone_for_other_data_is_refused_naming_both(overrides, message, tmp_path, hydra_cleanup):
    cfg = compose_config("train", overrides, tmp_path)
    with pytest.raises(ValueError) as err:
        build_module(cfg, build_datamodule(cfg))
    assert message in str(err.value)


def test_conditioning_needs_classes(tmp_path, hydra_cleanup):
    cfg = compose_config("train", ["conditioning.enabled=true"], tmp_path)
    with pytest.raises(ValueError, match="conditioning.enabled=true needs a labelled dataset"):
        build_module(cfg, DataFacts((1, 8, 8)))  # e.g. a flat image folder
    module = build_module(cfg, DataFacts((3, 8, 8), num_classes=4, num_bins=5))
    assert module.num_classes == 4 and module.backbone.in_channels == 3 and module.objective.num_bins == 5


@pytest.mark.parametrize(
    ("overrides", "facts", "num_bins"),
    [
        (["conditioning.enabled=true", "backbone.base_channels=16"],
         DataFacts((1, 8, 8), num_classes=10, num_bins=17), 17),
        # continuous: the objective's own setting
        (["experiment=moons"], DataFacts((2,), num_classes=2, num_bins=None), 256),
    ],
    ids=["digits_conditional", "moons"],
)
def test_a_checkpoint_rebuilds_its_model_from_the_recorded_facts(
    overrides, facts, num_bins, tmp_path, hydra_cleanup, one_thread
):
    run = tmp_path / "run"
    train(compose_config("train", [*overrides, *TWO_STEPS], run))
    assert yaml.safe_load((run / "resolved_config.yaml").read_text())["data"] == facts.as_config()
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    config = checkpoint[CHECKPOINT_KEY]["config"]
    assert config["data"] == facts.as_config()
    del config["dataset"]  # nothing of the data's own config is needed: the recorded facts size the model
    module, cfg = module_from_checkpoint(checkpoint)
    assert module.data_shape == facts.shape and module.objective.num_bins == num_bins
    assert module.num_classes == (facts.num_classes if cfg.conditioning.enabled else None)
    state = module.state_dict()
    assert (state.keys() == checkpoint["state_dict"].keys()
            and all(torch.equal(state[k], v) for k, v in checkpoint["state_dict"].items()))
    samples = module.sample(make_sampler("ddim", schedule=module.schedule, steps=2), 3)
    assert samples.shape == (3, *facts.shape) and torch.isfinite(samples).all()


def test_a_checkpoint_without_facts_is_refused_in_one_line():
    with pytest.raises(ValueError, match="records no data facts"):
        module_from_checkpoint({CHECKPOINT_KEY: {"config": {"backbone": {}}}, "state_dict": {}})


def test_resume_compares_the_data_facts_and_the_whole_schedule(tmp_path, hydra_cleanup):
    def run_config(*overrides: str, facts: DataFacts | None = DataFacts((1, 8, 8), 10, 17)) -> dict:
        config = to_container(compose_config("train", list(overrides), tmp_path))
        if facts is not None:
            config["data"] = facts.as_config()
        return config

    saved = {CHECKPOINT_KEY: {"config": run_config()}}
    assert config_mismatches(saved, run_config()) == []
    assert config_mismatches(saved, run_config(facts=DataFacts((1, 16, 16), 10, 17))) == [
        "data.shape: [1, 8, 8] -> [1, 16, 16]"]
    assert config_mismatches(saved, run_config(facts=None)) == []  # facts not known yet: not compared
    assert config_mismatches(saved, run_config("schedule.beta_end=0.03")) == ["schedule.beta_end: 0.02 -> 0.03"]
    # The classes size only a conditional model's label embedding.
    assert config_mismatches(saved, run_config(facts=DataFacts((1, 8, 8), 3, 17))) == []
    conditional = {CHECKPOINT_KEY: {"config": run_config("conditioning.enabled=true")}}
    changed = config_mismatches(conditional, run_config("conditioning.enabled=true", facts=DataFacts((1, 8, 8), 3, 17)))
    assert changed == ["data.num_classes: 10 -> 3"]
