"""Which metric best.ckpt tracks is decided from the config alone, before the run: name, mode and bad choices."""

from __future__ import annotations

import pytest

from difflab.callbacks.best_checkpoint import best_checkpoint, monitor_for, monitored_metric

EVALUATION = {"monitor_metric": "auto", "every_n_steps": 600, "sampler": {"name": "dpmpp_2m", "steps": 20}}
DIGITS = {"name": "digits", "weights_path": None}


@pytest.mark.parametrize(("metrics", "expected"), [
    (["kid", "fid"], "fid"), (["inception_score", "kid"], "kid"), (["precision_recall", "two_d"], "two_d"),
    (["inception_score"], "inception_score"), (["precision_recall", "nll"], None), ([], None),
])
def test_auto_takes_the_first_preferred_metric(metrics, expected):
    assert monitored_metric("auto", dict.fromkeys(metrics, {})) == expected


def test_the_monitor_is_the_logged_name_with_its_direction():
    metrics = {"kid": {"num_samples": 500}, "inception_score": {"num_samples": 2000}}
    assert monitor_for(metrics, DIGITS, EVALUATION).name == "val/kid_digits-lenet_n500_dpmpp2m20"
    chosen = monitor_for(metrics, DIGITS, {**EVALUATION, "monitor_metric": "inception_score"})
    assert (chosen.name, chosen.mode) == ("val/inception_score_digits-lenet_n2000_dpmpp2m20", "max")
    moons = monitor_for({"two_d": {"num_samples": 1000}}, None, {**EVALUATION, "sampler": {"name": "ddpm", "steps": 9}})
    assert (moons.name, moons.mode) == ("val/two_d_n1000_ddpm9", "min")


def test_nothing_monitored_means_no_best_checkpoint(tmp_path):
    assert best_checkpoint(str(tmp_path), {"fid": {"num_samples": 10}}, DIGITS,
                           {**EVALUATION, "monitor_metric": None}) is None
    assert best_checkpoint(str(tmp_path), {}, DIGITS, EVALUATION) is None
    callback = best_checkpoint(str(tmp_path), {"fid": {"num_samples": 10}}, DIGITS, EVALUATION)
    assert (callback.monitor, callback.mode, callback.filename) == ("val/fid_digits-lenet_n10_dpmpp2m20", "min", "best")


@pytest.mark.parametrize(("choice", "message"), [
    ("precision", "evaluation.monitor_metric='precision' cannot pick checkpoints"),
    ("kid", "evaluation.monitor_metric='kid' is not among metrics=['fid']"),
])
def test_bad_choices_are_named(choice, message):
    with pytest.raises(ValueError) as err:
        monitored_metric(choice, {"fid": {}})
    assert str(err.value).startswith(message)
