"""FID on the digits extractor tells bad samples from good ones; reference statistics are cached by their key."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from difflab.metrics import (
    build_feature_extractor,
    frechet_distance,
    gaussian_statistics,
    reference_key,
    reference_statistics,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def binomial_blur(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel[None, None])


@torch.no_grad()
def test_fid_ranks_held_out_digits_far_below_blurred_single_class_and_noise(digits_splits):
    (x_train, y_train), (x_val, _) = digits_splits
    extractor = build_feature_extractor("digits")
    reference = gaussian_statistics(extractor(x_train))

    def fid(x: torch.Tensor) -> float:
        return frechet_distance(*gaussian_statistics(extractor(x)), *reference)

    g = torch.Generator().manual_seed(0)
    threes = x_train[y_train == 3]
    floor = fid(x_val)  # real vs real: what a perfect model would score at n = 360
    worse = {
        "blurred": fid(binomial_blur(x_val)),
        "one class": fid(threes[torch.randint(len(threes), (360,), generator=g)]),
        "noise": fid(torch.rand(360, 1, 8, 8, generator=g) * 2 - 1),
    }
    assert floor < 5
    for name, value in worse.items():
        assert value > 20 * floor, f"{name}: {value:.1f} vs floor {floor:.2f}"
    # Half the blur is still clearly worse than none, and less bad than the full blur.
    half = fid(0.5 * (x_val + binomial_blur(x_val)))
    assert floor < half < worse["blurred"]


def test_reference_statistics_are_cached_under_a_key_of_everything_they_depend_on(digits_splits, tmp_path):
    (x_train, _), _ = digits_splits
    extractor = build_feature_extractor("digits")

    def batches(x):
        return (x[i:i + 500] for i in range(0, len(x), 500))

    dataset = {"name": "digits", "image_size": 8, "batch_size": 128}
    key = reference_key(dataset, "train", extractor.metric_name, extractor.weights_sha256, len(x_train))
    first = reference_statistics(extractor, batches(x_train), key, tmp_path)
    again = reference_statistics(extractor, iter([]), key, tmp_path)  # no images: only the cache can answer
    torch.testing.assert_close(first.mu, again.mu, rtol=0, atol=0)
    assert len(list(tmp_path.iterdir())) == 1
    # The loader's batch size is not part of the key; the image size, split and sample count are.
    assert reference_key({**dataset, "batch_size": 7}, "train", extractor.metric_name, extractor.weights_sha256,
                         len(x_train)) == key
    other = reference_key({**dataset, "image_size": 16}, "train", extractor.metric_name, extractor.weights_sha256,
                          len(x_train))
    assert other != key
    fewer = reference_key(dataset, "train", extractor.metric_name, extractor.weights_sha256, 1000)
    reference_statistics(extractor, batches(x_train[:1000]), fewer, tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    torch.testing.assert_close(first.mu, extractor(x_train).double().mean(0), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="expected 1437 images, got 1000"):
        reference_statistics(extractor, batches(x_train[:1000]), key, None)
