"""clip_sample and dynamic thresholding (Saharia et al. 2022, Imagen Sec. 2.3) of the x0 prediction, for every sampler.

Dynamic thresholding, per sample: s = quantile(|x0|, ratio) over all of the sample's entries, clamped to
[1, sample_max_value]; x0 <- clamp(x0, -s, s) / s. Both act on the x0 prediction, and eps is recomputed from it, so
(x0, eps) stay consistent: sqrt(abar) x0 + sqrt(1 - abar) eps = x_t. Checked against an independent numpy
computation, diffusers' ``_threshold_sample`` and diffusers' DDIM / DDPM / DPM-Solver++ schedulers with the same
options (diffusers' DDIM with ``use_clipped_model_output=True``, which is the recomputed eps).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflab.diffusion import make_schedule
from difflab.diffusion.schedules import NoiseSchedule
from difflab.samplers import SAMPLERS, dynamic_threshold, make_sampler

ALL = sorted(SAMPLERS)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("linear", num_timesteps=1000)


def numpy_threshold(x: np.ndarray, ratio: float, max_value: float) -> np.ndarray:
    """Imagen's dynamic thresholding, written directly in numpy."""
    flat = x.reshape(x.shape[0], -1)
    s = np.quantile(np.abs(flat), ratio, axis=1)  # numpy's default "linear" method
    s = np.clip(s, 1.0, max_value)[:, None]
    return (np.clip(flat, -s, s) / s).reshape(x.shape)


def wild_model(schedule: NoiseSchedule, scale: float = 3.0, seed: int = 0):
    """An eps model whose implied x0 is often far outside [-1, 1]: optimal eps for N(0, scale^2) data plus a
    smooth random perturbation."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(3, 3, generator=g, dtype=torch.float64)
    ab_table = schedule.alphas_cumprod

    def model_fn(x, t):
        t_int = t.round().long()
        ab = ab_table[t_int].view(-1, *([1] * (x.ndim - 1)))
        a, s = ab.sqrt(), (1.0 - ab).sqrt()
        xd = x.double()
        mix = torch.einsum("ij,bj...->bi...", W, xd)
        eps = s * xd / (ab * scale**2 + 1.0 - ab) + a * 0.5 * torch.tanh(mix)
        return eps.to(x.dtype)

    return model_fn


def x_T(shape=(6, 3, 4, 4), seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ the formula


@pytest.mark.parametrize("ratio", [0.995, 0.9, 0.5, 1.0])
@pytest.mark.parametrize("max_value", [1.0, 2.5, 100.0])
@pytest.mark.parametrize("shape", [(7, 3, 8, 8), (5, 2), (4, 1, 33)])
def test_dynamic_threshold_matches_numpy(ratio, max_value, shape):
    g = torch.Generator().manual_seed(int(1000 * ratio + max_value) + len(shape))
    # per-sample scales from 0.2 (s clamps to 1: plain clipping, mostly a no-op) to 6 (s = the quantile)
    scales = torch.logspace(np.log10(0.2), np.log10(6.0), shape[0], dtype=torch.float64).view(
        -1, *([1] * (len(shape) - 1))
    )
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * scales
    out = dynamic_threshold(x, ratio, max_value)
    np.testing.assert_allclose(out.numpy(), numpy_threshold(x.numpy(), ratio, max_value), rtol=0, atol=1e-14)
    assert out.abs().max() <= 1.0 + 1e-15
    # float32 in, float32 out, same values to float32 precision
    out32 = dynamic_threshold(x.float(), ratio, max_value)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.double().numpy(), out.numpy(), rtol=0, atol=1e-6)


def test_dynamic_threshold_is_per_sample():
    x = x_T((8, 3, 5, 5)) * torch.linspace(0.5, 5.0, 8, dtype=torch.float64).view(-1, 1, 1, 1)
    full = dynamic_threshold(x, 0.9, 4.0)
    for i in range(8):
        torch.testing.assert_close(dynamic_threshold(x[i : i + 1], 0.9, 4.0), full[i : i + 1], rtol=0, atol=0)


def test_dynamic_threshold_known_values():
    # one sample with |x| = 0.5, 1, ..., 5 (10 entries): 0.9-quantile at position 8.1 -> 4.5 + 0.1 * 0.5 = 4.55
    x = torch.arange(1, 11, dtype=torch.float64).view(1, 10) * 0.5 * torch.tensor([1.0, -1.0] * 5, dtype=torch.float64)
    out = dynamic_threshold(x, 0.9, 10.0)
    expected = np.clip(x.numpy(), -4.55, 4.55) / 4.55
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-15)
    # sample_max_value caps s: with max 2, s = 2
    np.testing.assert_allclose(dynamic_threshold(x, 0.9, 2.0).numpy(), np.clip(x.numpy(), -2, 2) / 2, atol=1e-15)
    # small values: s clamps to 1, nothing changes
    small = x / 10
    torch.testing.assert_close(dynamic_threshold(small, 0.9, 10.0), small, rtol=0, atol=0)


def test_dynamic_threshold_matches_diffusers_threshold_sample():
    diffusers = pytest.importorskip("diffusers")
    x = x_T((5, 3, 6, 6)) * torch.tensor([0.3, 1.0, 2.0, 4.0, 9.0], dtype=torch.float64).view(-1, 1, 1, 1)
    for ratio, max_value in [(0.995, 1.0), (0.9, 3.0), (0.7, 10.0)]:
        ref = diffusers.DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=ratio, sample_max_value=max_value)
        np.testing.assert_allclose(
            dynamic_threshold(x, ratio, max_value).numpy(), ref._threshold_sample(x).numpy(), rtol=0, atol=1e-12
        )


# ------------------------------------------------------------------------------------------------ inside the samplers


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("options", [
    {"clip_sample": True, "clip_sample_range": 1.0},
    {"clip_sample": True, "clip_sample_range": 0.5},
    {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 3.0},
])
def test_x0_is_processed_and_eps_recomputed(schedule, name, options):
    """predict_x0_eps returns the clipped / thresholded x0 and the eps consistent with it."""
    sampler = make_sampler(name, schedule=schedule, steps=10, **options)
    plain = make_sampler(name, schedule=schedule, steps=10)
    model = wild_model(schedule)
    x = x_T() * 2.0
    raw_max = 0.0
    for t in (999, 500, 100, 3):
        ab = schedule.alphas_cumprod[t]
        x0, eps = sampler.predict_x0_eps(model, x, t, ab, "eps")
        raw_x0, _ = plain.predict_x0_eps(model, x, t, ab, "eps")
        if options.get("thresholding"):
            expected = numpy_threshold(
                raw_x0.numpy(), options["dynamic_thresholding_ratio"], options["sample_max_value"]
            )
            bound = 1.0
        else:
            bound = options["clip_sample_range"]
            expected = np.clip(raw_x0.numpy(), -bound, bound)
        np.testing.assert_allclose(x0.numpy(), expected, rtol=0, atol=1e-12)
        assert x0.abs().max() <= bound + 1e-12
        raw_max = max(raw_max, raw_x0.abs().max().item())
        np.testing.assert_allclose((ab.sqrt() * x0 + (1 - ab).sqrt() * eps).numpy(), x.numpy(), rtol=0, atol=1e-10)
    assert raw_max > 2 * bound  # the processing did something


@pytest.mark.parametrize("name", ALL)
def test_clipped_samplers_end_inside_the_range(schedule, name):
    """Every sampler's final step returns the last (processed) x0 prediction, so the output lies in the range;
    without processing the same model's samples do not."""
    model = wild_model(schedule)
    x = x_T((16, 3, 4, 4))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    raw = make_sampler(name, schedule=schedule, steps=12).sample(model, x, generator=g())
    clipped = make_sampler(name, schedule=schedule, steps=12, clip_sample=True, clip_sample_range=0.8).sample(
        model, x, generator=g()
    )
    thresh = make_sampler(name, schedule=schedule, steps=12, thresholding=True, sample_max_value=2.0).sample(
        model, x, generator=g()
    )
    assert raw.abs().max() > 1.5
    assert clipped.abs().max() <= 0.8 + 1e-12
    assert thresh.abs().max() <= 1.0 + 1e-12


def test_thresholding_takes_precedence_over_clipping(schedule):
    model = wild_model(schedule)
    both = make_sampler(
        "ddim",
        schedule=schedule,
        steps=10,
        clip_sample=True,
        clip_sample_range=0.3,
        thresholding=True,
        sample_max_value=2.0,
    )
    only = make_sampler("ddim", schedule=schedule, steps=10, thresholding=True, sample_max_value=2.0)
    torch.testing.assert_close(both.sample(model, x_T()), only.sample(model, x_T()), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("clip_sample_range", 0.0),
        ("dynamic_thresholding_ratio", 0.0),
        ("dynamic_thresholding_ratio", 1.5),
        ("sample_max_value", 0.5),
    ],
)
def test_bad_options_raise_naming_them(schedule, option, value):
    for name in ALL:
        with pytest.raises(ValueError, match=rf"sampler\.{option}={value!r}"):
            make_sampler(name, schedule=schedule, steps=10, **{option: value})


# ------------------------------------------------------------------------------------------------ against diffusers


def _diffusers_schedule():
    diffusers = pytest.importorskip("diffusers")
    ab = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod.double()
    return diffusers, NoiseSchedule("diffusers-linear", 1.0 - ab / torch.cat([ab.new_ones(1), ab[:-1]]))


def _run(ref, model, x, step_kwargs=None):
    for t in ref.timesteps:
        x = ref.step(model(x, t.expand(x.shape[0])), t, x, **(step_kwargs or {})).prev_sample
    return x


def _max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


THRESH = {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 2.0}


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize(
    "options",
    [{"clip_sample": True, "clip_sample_range": 1.0}, {"clip_sample": True, "clip_sample_range": 0.7}, THRESH],
)
def test_ddim_with_clipping_matches_diffusers(eta, options):
    diffusers, schedule = _diffusers_schedule()
    model = wild_model(schedule)
    ours = make_sampler("ddim", schedule=schedule, steps=20, eta=eta, **options)
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        set_alpha_to_one=True,
        steps_offset=0,
        **({"clip_sample": False} | options),
    )
    ref.set_timesteps(20)
    a = ours.sample(model, x_T(), generator=torch.Generator().manual_seed(2))
    b = _run(
        ref, model, x_T(), {"eta": eta, "generator": torch.Generator().manual_seed(2), "use_clipped_model_output": True}
    )
    assert _max_diff(a, b) < 1e-4, _max_diff(a, b)  # measured <= 1e-6
    unclipped = make_sampler("ddim", schedule=schedule, steps=20, eta=eta).sample(
        model, x_T(), generator=torch.Generator().manual_seed(2)
    )
    assert _max_diff(a, unclipped) > 0.1


@pytest.mark.parametrize("options", [{"clip_sample": True, "clip_sample_range": 1.0}, THRESH])
def test_ddpm_with_clipping_matches_diffusers(options):
    diffusers, schedule = _diffusers_schedule()
    model = wild_model(schedule)
    ours = make_sampler("ddpm", schedule=schedule, steps=25, **options)
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        timestep_spacing="leading",
        **({"clip_sample": False} | options),
    )
    ref.set_timesteps(25)
    a = ours.sample(model, x_T(), generator=torch.Generator().manual_seed(2))
    b = _run(ref, model, x_T(), {"generator": torch.Generator().manual_seed(2)})
    assert _max_diff(a, b) < 1e-4, _max_diff(a, b)


@pytest.mark.parametrize("steps", [8, 20])
def test_dpmpp_2m_with_thresholding_matches_diffusers(steps):
    diffusers, schedule = _diffusers_schedule()
    model = wild_model(schedule)
    ours = make_sampler("dpmpp_2m", schedule=schedule, steps=steps, **THRESH)
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", algorithm_type="dpmsolver++", solver_order=2,
        solver_type="midpoint", timestep_spacing="trailing", **THRESH,
    )
    ref.set_timesteps(steps)
    a = ours.sample(model, x_T())
    b = _run(ref, model, x_T())
    assert _max_diff(a, b) < 1e-4, _max_diff(a, b)
    assert _max_diff(a, make_sampler("dpmpp_2m", schedule=schedule, steps=steps).sample(model, x_T())) > 0.1
