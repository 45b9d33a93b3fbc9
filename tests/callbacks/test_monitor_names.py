"""best.ckpt, the sweeper's scored names and the scorer agree on the new names: sampler settings, reference splits."""

from __future__ import annotations

import pytest

from difflab.callbacks.best_checkpoint import monitor_for
from difflab.scoring import SampleScorer
from difflab.sweeps.search import scored_names

DIGITS = {"name": "digits", "weights_path": None}
DDIM = {"_target_": "difflab.samplers.make_sampler", "_partial_": True, "name": "ddim", "steps": 10, "eta": 0.5,
        "timestep_spacing": "leading", "clip_sample": False}
METRICS = {"fid": {"num_samples": 1000}, "inception_score": {"num_samples": 1000},
           "precision_recall": {"num_samples": 500}}


def evaluation(split) -> dict:
    return {"monitor_metric": "auto", "every_n_steps": 600, "sampler": DDIM, "reference": {"split": split}}


@pytest.mark.parametrize(("split", "suffix"), [("train", ""), ("val", "_refval"), (["train", "val"], ""),
                                               (["val", "train"], "_refval")])
def test_best_ckpt_tracks_the_first_metric_against_the_first_split(split, suffix):
    assert monitor_for(METRICS, DIGITS, evaluation(split)).name == f"val/fid_digits-lenet_n1000_ddim10-eta0.5{suffix}"
    chosen = monitor_for(METRICS, DIGITS, {**evaluation(split), "monitor_metric": "inception_score"})
    assert chosen.name == "val/inception_score_digits-lenet_n1000_ddim10-eta0.5"  # no reference: no suffix


def test_without_a_reference_node_the_split_is_train():
    node = {k: v for k, v in evaluation("val").items() if k != "reference"}
    assert monitor_for(METRICS, DIGITS, node).name == "val/fid_digits-lenet_n1000_ddim10-eta0.5"


def test_a_bad_split_is_refused_by_the_monitor():
    with pytest.raises(ValueError, match=r"^evaluation.reference.split=\['train', 'test'\] must be one of"):
        monitor_for(METRICS, DIGITS, evaluation(["train", "test"]))


def test_the_scorer_and_the_sweeper_name_the_same_values():
    scorer = SampleScorer(metrics=METRICS, features=DIGITS, sampler=DDIM, reference={"split": ["train", "val"]},
                          dataset={})
    base = "digits-lenet_n{}_ddim10-eta0.5"
    assert scorer.names() == {
        "fid": {"train": f"val/fid_{base.format(1000)}", "val": f"val/fid_{base.format(1000)}_refval"},
        "inception_score": f"val/inception_score_{base.format(1000)}",
        "precision_recall": {"train": f"val/precision_recall_{base.format(500)}",
                             "val": f"val/precision_recall_{base.format(500)}_refval"},
    }
    assert scored_names(METRICS, DIGITS, evaluation(["train", "val"])) == [
        f"val/fid_{base.format(1000)}", f"val/fid_{base.format(1000)}_refval",
        f"val/inception_score_{base.format(1000)}",
        f"val/precision_{base.format(500)}", f"val/recall_{base.format(500)}",
        f"val/precision_{base.format(500)}_refval", f"val/recall_{base.format(500)}_refval",
    ]


@pytest.mark.parametrize(("reference", "message"), [
    ({"split": []}, "reference.split=[] must be one of ['train', 'val'] or a list of them without repeats"),
    ({"split": ["val", "val"]}, "reference.split=['val', 'val'] must be one of"),
    ({"split": "test"}, "reference.split='test' must be one of"),
])
def test_the_scorer_refuses_bad_splits_naming_its_config_key(reference, message):
    with pytest.raises(ValueError) as err:
        SampleScorer(metrics={}, features=None, sampler=DDIM, reference=reference, dataset={}, config_key="reference")
    assert str(err.value).startswith(message)


def test_the_scorer_builds_the_sampler_its_names_describe():
    from difflab.diffusion import make_schedule

    scorer = SampleScorer(metrics={}, features=None, sampler=DDIM, reference={}, dataset={})
    sampler = scorer.build_sampler(make_schedule("linear", num_timesteps=100))
    assert (type(sampler).__name__, sampler.steps, sampler.eta) == ("DDIMSampler", 10, 0.5)
    with pytest.raises(ValueError, match=r"^sampler._target_='my.sampler': scored samplers are built by"):
        SampleScorer(metrics={}, features=None, sampler={**DDIM, "_target_": "my.sampler"}, reference={}, dataset={})
