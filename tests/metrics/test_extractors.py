"""The shipped digits extractor (accuracy, record, rebuild), the Inception error path and safe loading."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from conftest import code_running_pickle

from difflab.metrics import INCEPTION_FILE, INCEPTION_URL, build_feature_extractor, inception_weights_path
from difflab.metrics.lenet import WEIGHTS_DIR, lenet_record
from difflab.metrics.train_extractor import accuracy, train_lenet, write_extractor


def test_shipped_digits_extractor_reaches_97_percent_on_held_out_digits(digits_splits):
    extractor = build_feature_extractor("digits")
    (_, _), (x_val, y_val) = digits_splits
    measured = accuracy(extractor.net, x_val, y_val)
    assert measured >= 0.97
    record = lenet_record("digits_lenet")
    assert record["test_accuracy"] == pytest.approx(measured, abs=1e-9)  # the record tells the truth
    assert record["sha256"] == hashlib.sha256((WEIGHTS_DIR / "digits_lenet.pt").read_bytes()).hexdigest()
    assert extractor(x_val[:5]).shape == (5, 84) and extractor.metric_name == "digits-lenet"


def test_the_recipe_rebuilds_an_extractor_above_97_percent(digits_splits, tmp_path):
    (x_tr, y_tr), (x_val, y_val) = digits_splits
    model = train_lenet(x_tr, y_tr, num_classes=10)
    assert accuracy(model, x_val, y_val) >= 0.97
    path = write_extractor(model, "digits_lenet", {"name": "digits_lenet"}, tmp_path)
    assert (json.loads((tmp_path / "digits_lenet.json").read_text())["sha256"]
            == hashlib.sha256(path.read_bytes()).hexdigest())


def test_digits_extractor_rejects_other_image_shapes():
    with pytest.raises(ValueError, match=r"\[B, 1, 8, 8\]"):
        build_feature_extractor("digits")(torch.zeros(2, 3, 32, 32))


def test_missing_inception_weights_name_the_file_the_url_and_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        build_feature_extractor("inception")
    message = str(err.value)
    assert INCEPTION_FILE in message and INCEPTION_URL in message and "features.weights_path" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_a_weights_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / INCEPTION_FILE
    bad.write_bytes(code_running_pickle(marker, "conv.weight"))
    with pytest.raises(ValueError, match="not a loadable Inception-v3 state dict"):
        build_feature_extractor("inception", str(bad))
    assert not marker.exists()


def test_unknown_extractor_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        build_feature_extractor("vgg")
    assert inception_weights_path  # public helper
