"""eps / x0 / v conversions and targets against the definitions, computed here in numpy float64.

With a = sqrt(abar), s = sqrt(1 - abar): x_t = a x0 + s eps and v = a eps - s x0 (Salimans & Ho 2022, eq. 9).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from difflab.diffusion import (
    PREDICTION_TYPES,
    DiffusionObjective,
    GaussianDiffusion,
    make_schedule,
    target_for,
    to_x0_eps,
)

ALPHA_BARS = np.array([1.0 - 1e-4, 0.9, 0.5, 0.1, 4.036e-5, 1e-8])


def _batch(dtype=torch.float64):
    rng = np.random.default_rng(0)
    n = ALPHA_BARS.size
    x0 = rng.normal(size=(n, 3, 5))
    eps = rng.normal(size=(n, 3, 5))
    a = np.sqrt(ALPHA_BARS)[:, None, None]
    s = np.sqrt(1.0 - ALPHA_BARS)[:, None, None]
    xt = a * x0 + s * eps
    v = a * eps - s * x0
    return {"x0": x0, "eps": eps, "xt": xt, "v": v}


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_to_x0_eps_recovers_x0_and_eps_float64(prediction_type):
    b = _batch()
    output = torch.from_numpy(b[prediction_type])
    x0, eps = to_x0_eps(output, torch.from_numpy(b["xt"]), torch.from_numpy(ALPHA_BARS), prediction_type)
    assert x0.dtype == eps.dtype == torch.float64
    # x0 from eps divides by a = sqrt(abar) (1e-4 at abar=1e-8); eps from x0 divides by s (0.01 at abar=1-1e-4).
    # Both amplify rounding of x_t, so compare with an absolute tolerance scaled by that factor.
    np.testing.assert_allclose(x0.numpy(), b["x0"], rtol=0, atol=1e-10 if prediction_type == "eps" else 1e-13)
    np.testing.assert_allclose(eps.numpy(), b["eps"], rtol=0, atol=1e-12 if prediction_type == "x0" else 1e-13)


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_to_x0_eps_float32_keeps_dtype_and_precision(prediction_type):
    b = _batch()
    keep = slice(0, 4)  # abar in [0.1, 1 - 1e-4]: conditioning at most 1/s = 100
    ab = torch.from_numpy(ALPHA_BARS[keep])
    output = torch.from_numpy(b[prediction_type][keep]).float()
    x0, eps = to_x0_eps(output, torch.from_numpy(b["xt"][keep]).float(), ab, prediction_type)
    assert x0.dtype == eps.dtype == torch.float32
    # float32 inputs carry ~6e-8 relative rounding; eps from x0 amplifies it by a/s <= 100.
    np.testing.assert_allclose(x0.double().numpy(), b["x0"][keep], atol=2e-6, rtol=0)
    np.testing.assert_allclose(
        eps.double().numpy(), b["eps"][keep], atol=5e-5 if prediction_type == "x0" else 2e-6, rtol=0
    )


def test_round_trip_through_all_types():
    """target_for(type, x0, eps) followed by to_x0_eps gives back (x0, eps) for every type."""
    b = _batch()
    ab = torch.from_numpy(ALPHA_BARS)
    x0, eps, xt = (torch.from_numpy(b[k]) for k in ("x0", "eps", "xt"))
    for prediction_type in PREDICTION_TYPES:
        out = target_for(prediction_type, x0, eps, ab)
        rx0, reps = to_x0_eps(out, xt, ab, prediction_type)
        np.testing.assert_allclose(rx0.numpy(), b["x0"], atol=1e-10, rtol=0)
        np.testing.assert_allclose(reps.numpy(), b["eps"], atol=1e-12, rtol=0)


def test_v_target_definition():
    b = _batch()
    ab = torch.from_numpy(ALPHA_BARS)
    v = target_for("v", torch.from_numpy(b["x0"]), torch.from_numpy(b["eps"]), ab)
    expected = np.sqrt(ALPHA_BARS)[:, None, None] * b["eps"] - np.sqrt(1 - ALPHA_BARS)[:, None, None] * b["x0"]
    np.testing.assert_allclose(v.numpy(), expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(
        target_for("eps", torch.from_numpy(b["x0"]), torch.from_numpy(b["eps"]), ab).numpy(), b["eps"]
    )
    np.testing.assert_array_equal(
        target_for("x0", torch.from_numpy(b["x0"]), torch.from_numpy(b["eps"]), ab).numpy(), b["x0"]
    )
    v32 = target_for("v", torch.from_numpy(b["x0"]).float(), torch.from_numpy(b["eps"]).float(), ab)
    assert v32.dtype == torch.float32


def test_v_is_the_velocity_of_the_trigonometric_path():
    """Salimans & Ho define v = d x_phi / d phi for x_phi = cos(phi) x0 + sin(phi) eps; check by central differences."""
    rng = np.random.default_rng(1)
    x0, eps = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    phi = np.array([0.1, 0.6, 1.0, 1.4])
    h = 1e-6
    path = lambda p: np.cos(p)[:, None] * x0 + np.sin(p)[:, None] * eps  # noqa: E731
    fd = (path(phi + h) - path(phi - h)) / (2 * h)
    ab = torch.from_numpy(np.cos(phi) ** 2)
    v = target_for("v", torch.from_numpy(x0), torch.from_numpy(eps), ab).numpy()
    np.testing.assert_allclose(v, fd, atol=1e-8, rtol=0)


@pytest.mark.parametrize("bad", ["epsilon", "sample", "V", ""])
def test_unknown_prediction_type_raises_naming_it(bad):
    x = torch.zeros(2, 3)
    ab = torch.full((2,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"prediction_type='{bad}'"):
        to_x0_eps(x, x, ab, bad)
    with pytest.raises(ValueError, match=f"prediction_type='{bad}'"):
        target_for(bad, x, x, ab)
    with pytest.raises(ValueError, match=f"prediction_type='{bad}'"):
        DiffusionObjective(prediction_type=bad)


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_objective_is_per_sample_mean_squared_error(prediction_type):
    diffusion = GaussianDiffusion(make_schedule("linear", num_timesteps=1000))
    ab_np = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 2, 3, generator=g)
    noise = torch.randn(4, 2, 3, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    a = torch.from_numpy(np.sqrt(ab_np[t.numpy()])).float().view(4, 1, 1)
    s = torch.from_numpy(np.sqrt(1 - ab_np[t.numpy()])).float().view(4, 1, 1)
    target = {"eps": noise, "x0": x0, "v": a * noise - s * x0}[prediction_type]
    objective = DiffusionObjective(prediction_type=prediction_type)

    def perfect(x_t, tt):
        np.testing.assert_allclose(x_t.numpy(), (a * x0 + s * noise).numpy(), atol=1e-6)
        assert torch.equal(tt, t)
        return target

    loss = objective(perfect, diffusion, x0, t, noise)
    assert loss.shape == (4,)
    np.testing.assert_allclose(loss.numpy(), 0.0, atol=1e-11)
    loss0 = objective(lambda x_t, tt: torch.zeros_like(x_t), diffusion, x0, t, noise)
    np.testing.assert_allclose(loss0.numpy(), (target.double() ** 2).mean(dim=(1, 2)).numpy(), rtol=1e-5)
    assert math.isfinite(loss0.sum().item())
