"""SinusoidalTimeEmbedding against an independent numpy transcription of DDPM's get_timestep_embedding."""

import math

import numpy as np
import pytest
import torch

from difflab.backbones import SinusoidalTimeEmbedding


def ddpm_embedding_np(t: np.ndarray, dim: int) -> np.ndarray:
    half = dim // 2
    freqs = np.exp(np.arange(half, dtype=np.float64) * -(math.log(10000.0) / (half - 1)))
    args = t.astype(np.float64)[:, None] * freqs[None, :]
    emb = np.concatenate([np.sin(args), np.cos(args)], axis=1)
    if dim % 2 == 1:
        emb = np.concatenate([emb, np.zeros((len(t), 1))], axis=1)
    return emb


@pytest.mark.parametrize("dim", [4, 7, 64, 128])
def test_matches_closed_form_for_integer_timesteps(dim):
    t = np.array([0, 1, 17, 500, 999])
    out = SinusoidalTimeEmbedding(dim)(torch.from_numpy(t))
    assert out.shape == (5, dim) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ddpm_embedding_np(t, dim), atol=2e-4)


def test_matches_closed_form_for_float_timesteps_and_known_values():
    t = np.array([0.0, 0.5, 250.25])
    out = SinusoidalTimeEmbedding(10)(torch.tensor(t, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out, ddpm_embedding_np(t, 10), atol=2e-4)
    # t=0: sin part is 0, cos part is 1; the odd-dim pad column is 0.
    np.testing.assert_array_equal(SinusoidalTimeEmbedding(9)(torch.tensor([0])).numpy(), [[0, 0, 0, 0, 1, 1, 1, 1, 0]])
    # first frequency is exactly 1 and the last is 1/max_period
    e = SinusoidalTimeEmbedding(8)(torch.tensor([1.0])).numpy()[0]
    np.testing.assert_allclose([e[0], e[3]], [math.sin(1.0), math.sin(1e-4)], rtol=1e-5)


def test_stays_float32_under_bf16_autocast():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = SinusoidalTimeEmbedding(32)(torch.arange(4))
    assert out.dtype == torch.float32


def test_rejects_bad_shapes_and_dims():
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        SinusoidalTimeEmbedding(8)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="dim=2"):
        SinusoidalTimeEmbedding(2)
