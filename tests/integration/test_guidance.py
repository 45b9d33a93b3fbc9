"""Class-conditional training with label dropout, and classifier-free guidance at sampling time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose_config
from sklearn.svm import SVC

from difflab.checkpoints import load_checkpoint, module_from_checkpoint
from difflab.data import DigitsDataModule
from difflab.samplers import make_sampler
from difflab.samplers.guidance import class_labels, guided_model_fn
from difflab.train import train


def test_guidance_combines_conditional_and_unconditional_outputs():
    def network(x, t, y):  # output depends on the label in a known way
        return x * 0 + y[:, None].float()

    y = torch.tensor([2, 5])
    x, t = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    out = guided_model_fn(network, y, null_label=10, guidance_scale=3.0)(x, t)
    # uncond + 3 * (cond - uncond) = 10 + 3 * (y - 10)
    torch.testing.assert_close(out, (10 + 3 * (y - 10)).float()[:, None].expand(2, 3))
    assert guided_model_fn(network, y, 10, 1.0)(x, t).equal(y.float()[:, None].expand(2, 3))


def test_class_labels():
    assert class_labels("all", range(3, 7), 3).tolist() == [0, 1, 2, 0]
    assert class_labels(4, range(2), 10).tolist() == [4, 4]
    assert class_labels("none", range(2), 10).tolist() == [10, 10]
    assert class_labels("all", range(2), None) is None
    with pytest.raises(ValueError, match="class_label=10"):
        class_labels(10, range(2), 10)
    with pytest.raises(ValueError, match="not class-conditional"):
        class_labels(3, range(2), None)


@pytest.mark.slow  # 800 steps of a conditional U-Net, ~5 min on one thread; the guidance formula is checked above
def test_guided_digits_model_draws_the_requested_class(tmp_path, hydra_cleanup):
    cfg = compose_config("train", [
        "conditioning.enabled=true", "trainer.max_steps=800", "callbacks.rich_progress_bar=null", "metrics=[]",
        "callbacks.sample_grid.every_n_steps=100000", "callbacks.sample_grid.num_samples=20",
        "callbacks.model_checkpoint.every_n_train_steps=800", "trainer.val_check_interval=800",
    ], tmp_path)
    train(cfg)
    module, _ = module_from_checkpoint(load_checkpoint(tmp_path / "checkpoints" / "last.ckpt"))

    dm = DigitsDataModule()
    dm.setup("fit")
    x_train, y_train = dm.train_dataset.tensors
    x_val, y_val = dm.val_dataset.tensors
    judge = SVC(gamma="scale").fit(x_train.flatten(1).numpy(), y_train.numpy())
    assert judge.score(x_val.flatten(1).numpy(), y_val.numpy()) > 0.97  # the judge itself is reliable

    sampler = make_sampler("ddim", schedule=module.schedule, steps=50)
    hits = []
    for k in range(10):
        samples = module.sample(sampler, 20, seed=k, class_label=k, guidance_scale=3.0)
        hits.append(np.mean(judge.predict(samples.flatten(1).clamp(-1, 1).numpy()) == k))
    print("fraction of class k per k:", np.round(hits, 2))
    assert np.mean(hits) > 0.8 and min(hits) > 0.5
