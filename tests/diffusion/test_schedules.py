"""Noise schedules against closed forms computed here, independently, with ``math``/numpy in float64.

Index convention under test: ``betas[i]`` is the paper's beta_{i+1} and ``alphas_cumprod[i]`` the paper's
alpha-bar_{i+1} = prod_{j<=i} (1 - betas[j]).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from difflab.diffusion import NoiseSchedule, make_schedule

RTOL = 1e-12


def alpha_bar_by_product(betas: np.ndarray, i: int) -> float:
    """alpha-bar at index i as a plain Python product (independent of torch.cumprod)."""
    return math.prod(1.0 - float(b) for b in betas[: i + 1])


# ----------------------------------------------------------------------------------------------- linear


def test_linear_t1000_is_ddpm_linspace():
    sched = make_schedule("linear", num_timesteps=1000)
    expected = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(sched.betas.numpy(), expected, rtol=RTOL, atol=0)
    assert sched.betas[0].item() == pytest.approx(1e-4, rel=1e-14)
    assert sched.betas[-1].item() == pytest.approx(0.02, rel=1e-14)


@pytest.mark.parametrize("i", [0, 499, 999])
def test_linear_alpha_bar_equals_product_formula(i):
    sched = make_schedule("linear", num_timesteps=1000)
    betas = [1e-4 + (0.02 - 1e-4) * k / 999 for k in range(1000)]
    expected = math.prod(1.0 - b for b in betas[: i + 1])
    assert sched.alphas_cumprod[i].item() == pytest.approx(expected, rel=RTOL)


def test_linear_terminal_alpha_bar_published_value():
    # DDPM linear schedule: alpha-bar_T = 4.036e-5, i.e. sqrt(alpha-bar_T) = 0.006353.
    sched = make_schedule("linear", num_timesteps=1000)
    assert sched.alphas_cumprod[-1].item() == pytest.approx(4.036e-5, rel=1e-3)
    assert math.sqrt(sched.alphas_cumprod[-1].item()) == pytest.approx(0.006353, rel=1e-3)
    assert sched.alphas_cumprod_prev[0].item() == 1.0
    np.testing.assert_array_equal(sched.alphas_cumprod_prev[1:].numpy(), sched.alphas_cumprod[:-1].numpy())


def test_linear_rescaled_to_t500_doubles_endpoints():
    sched = make_schedule("linear", num_timesteps=500)
    np.testing.assert_allclose(sched.betas.numpy(), np.linspace(2e-4, 0.04, 500), rtol=RTOL, atol=0)
    betas = np.linspace(2e-4, 0.04, 500)
    assert sched.alphas_cumprod[-1].item() == pytest.approx(alpha_bar_by_product(betas, 499), rel=RTOL)
    # What the rescaling preserves: the total sum of betas, 500 * (2e-4 + 0.04) / 2 = 1000 * (1e-4 + 0.02) / 2 = 10.05,
    # so -log alpha-bar_T = sum(beta) + sum(beta^2)/2 + ... matches T=1000 to first order (3.77e-5 vs 4.04e-5).
    assert sched.betas.sum().item() == pytest.approx(10.05, rel=1e-12)
    assert -math.log(sched.alphas_cumprod[-1].item()) == pytest.approx(-math.log(4.036e-5), rel=0.01)


def test_linear_rescale_off_keeps_endpoints():
    sched = make_schedule("linear", num_timesteps=500, rescale_to_timesteps=False)
    np.testing.assert_allclose(sched.betas.numpy(), np.linspace(1e-4, 0.02, 500), rtol=RTOL, atol=0)


def test_linear_rescaling_out_of_range_raises_naming_beta_and_value():
    # T=10: scale 1000/10 = 100, so beta_end becomes 0.02 * 100 = 2.0.
    with pytest.raises(ValueError, match=r"beta_end.*\b2\b"):
        make_schedule("linear", num_timesteps=10)


# ----------------------------------------------------------------------------------------------- cosine


def _cosine_f(u: float, s: float = 0.008) -> float:
    return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2


@pytest.mark.parametrize("T", [1000, 50])
def test_cosine_alpha_bar_is_f_ratio_where_unclipped(T):
    sched = make_schedule("cosine", num_timesteps=T)
    f0 = _cosine_f(0.0)
    raw_betas = [1.0 - _cosine_f((i + 1) / T) / _cosine_f(i / T) for i in range(T)]
    clipped = [i for i, b in enumerate(raw_betas) if b > 0.999]
    # For the standard s = 0.008 only the very last step exceeds 0.999 (f(1) = cos^2(pi/2) ~ 0).
    assert clipped == [T - 1]
    for i in range(T - 1):
        assert sched.alphas_cumprod[i].item() == pytest.approx(_cosine_f((i + 1) / T) / f0, rel=1e-11), i
        assert sched.betas[i].item() == pytest.approx(raw_betas[i], rel=1e-10, abs=1e-15), i
    assert sched.betas[-1].item() == 0.999
    assert sched.alphas_cumprod[-1].item() == pytest.approx(_cosine_f((T - 1) / T) / f0 * 0.001, rel=1e-11)


def test_cosine_max_beta_is_respected():
    sched = make_schedule("cosine", num_timesteps=1000, max_beta=0.5)
    raw = np.array([1.0 - _cosine_f((i + 1) / 1000) / _cosine_f(i / 1000) for i in range(1000)])
    np.testing.assert_allclose(sched.betas.numpy(), np.minimum(raw, 0.5), rtol=1e-10, atol=1e-15)
    assert (raw > 0.5).sum() > 1  # the clipping is exercised on more than one step


# ----------------------------------------------------------------------------------------------- polynomial


@pytest.mark.parametrize(
    ("b0", "b1", "p", "T"), [(1e-4, 0.02, 2.0, 1000), (1e-3, 0.2, 3.0, 100), (0.00085, 0.012, 0.5, 37)]
)
def test_polynomial_formula(b0, b1, p, T):
    sched = make_schedule("polynomial", num_timesteps=T, beta_start=b0, beta_end=b1, power=p)
    expected = np.array([(b0 ** (1 / p) + (b1 ** (1 / p) - b0 ** (1 / p)) * k / (T - 1)) ** p for k in range(T)])
    np.testing.assert_allclose(sched.betas.numpy(), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("T", [1000, 300])
def test_polynomial_power_one_is_linear_without_rescaling(T):
    poly = make_schedule("polynomial", num_timesteps=T, beta_start=1e-4, beta_end=0.02, power=1.0)
    lin = make_schedule("linear", num_timesteps=T, rescale_to_timesteps=False)
    np.testing.assert_allclose(poly.betas.numpy(), lin.betas.numpy(), rtol=1e-13, atol=0)
    np.testing.assert_allclose(poly.betas.numpy(), np.linspace(1e-4, 0.02, T), rtol=1e-13, atol=0)


def test_polynomial_power_two_is_diffusers_scaled_linear():
    sched = make_schedule("polynomial", num_timesteps=1000, beta_start=0.00085, beta_end=0.012, power=2.0)
    # diffusers: torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
    diffusers_f32 = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    np.testing.assert_allclose(sched.betas.numpy(), diffusers_f32.double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(sched.betas.numpy(), np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2, rtol=1e-13)
    # Published (Lin et al. 2023, Sec. 3.1): Stable Diffusion's schedule has sqrt(alpha-bar_T) = 0.068265
    # and SNR(T) = 0.004682.
    ab_T = sched.alphas_cumprod[-1].item()
    assert math.sqrt(ab_T) == pytest.approx(0.068265, abs=5e-7)
    assert sched.snr[-1].item() == pytest.approx(0.004682, abs=5e-7)


def test_polynomial_two_moons_preset():
    """The two-moons guide's betas: linspace(0, 0.99, 10)**4 with the leading 0 a dummy, i.e. (0.11 k)^4, k=1..9.

    As a polynomial schedule those 9 betas are linspace(0.11, 0.99, 9)**4, i.e. beta_start = 0.11**4 = (0.99/9)**4
    and beta_end = 0.99**4 (beta_end is the last beta itself, not 0.99). beta_start=0.99/9**4, beta_end=0.99 gives
    linspace(0.99**0.25/9, 0.99**0.25, 9)**4 = 0.99 (k/9)^4, which differs by the factor 0.99**3.
    """
    guide = np.linspace(0.0, 0.99, 10) ** 4
    real = guide[1:]
    sched = make_schedule("polynomial", num_timesteps=9, beta_start=0.11**4, beta_end=0.99**4, power=4.0)
    np.testing.assert_allclose(sched.betas.numpy(), real, rtol=1e-13, atol=0)
    assert sched.betas[0].item() == pytest.approx(1.4641e-4, rel=1e-12)
    assert sched.betas[-1].item() == pytest.approx(0.96059601, rel=1e-12)
    off = make_schedule("polynomial", num_timesteps=9, beta_start=0.99 / 9**4, beta_end=0.99, power=4.0)
    np.testing.assert_allclose(off.betas.numpy(), real / 0.99**3, rtol=1e-12)


def test_polynomial_zero_beta_start_rejected_by_schedule():
    # The guide's dummy beta 0 is not a valid step: every beta must be in (0, 1).
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        make_schedule("polynomial", num_timesteps=10, beta_start=0.0, beta_end=0.99**4, power=4.0)


# ----------------------------------------------------------------------------------------------- sigmoid


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@pytest.mark.parametrize(("start", "end", "tau", "T"), [(-3.0, 3.0, 1.0, 1000), (0.0, 3.0, 0.7, 200)])
def test_sigmoid_alpha_bar_chen_2023(start, end, tau, T):
    kwargs = {} if (start, end, tau) == (-3.0, 3.0, 1.0) else {"start": start, "end": end, "tau": tau}
    sched = make_schedule("sigmoid", num_timesteps=T, **kwargs)
    v_start, v_end = _sigmoid(start / tau), _sigmoid(end / tau)

    def g(u: float) -> float:
        return (v_end - _sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)

    raw_betas = [1.0 - g((i + 1) / T) / g(i / T) for i in range(T)]
    assert [i for i, b in enumerate(raw_betas) if b > 0.999] == [T - 1]  # g(1) = 0 exactly
    for i in range(T - 1):
        assert sched.alphas_cumprod[i].item() == pytest.approx(g((i + 1) / T), rel=1e-10), i
    assert sched.betas[-1].item() == 0.999


# ----------------------------------------------------------------------------------------------- all schedules

ALL = [
    ("linear", 1000, {}),
    ("linear", 2, {"rescale_to_timesteps": False}),
    ("linear", 4000, {}),
    ("cosine", 1000, {}),
    ("cosine", 2, {}),
    ("polynomial", 1000, {"power": 2.0}),
    ("polynomial", 10, {"beta_start": 0.11**4, "beta_end": 0.99**4, "power": 4.0}),
    ("sigmoid", 1000, {}),
    ("sigmoid", 3, {}),
]


@pytest.mark.parametrize(("name", "T", "kwargs"), ALL)
def test_schedule_invariants(name, T, kwargs):
    sched = make_schedule(name, num_timesteps=T, **kwargs)
    assert isinstance(sched, NoiseSchedule)
    assert sched.num_timesteps == T
    for tensor in (sched.betas, sched.alphas, sched.alphas_cumprod, sched.alphas_cumprod_prev):
        assert tensor.dtype == torch.float64
        assert tensor.shape == (T,)
    b = sched.betas.numpy()
    assert np.all((b > 0) & (b < 1))
    ab = sched.alphas_cumprod.numpy()
    assert np.all(np.diff(ab) < 0) and ab[0] < 1 and ab[-1] > 0
    np.testing.assert_allclose(sched.alphas.numpy(), 1.0 - b, rtol=0, atol=0)
    assert ab[-1] == pytest.approx(alpha_bar_by_product(b, T - 1), rel=RTOL)


@pytest.mark.parametrize("name", ["quadratic", "Linear", ""])
def test_unknown_schedule_name_raises_naming_it(name):
    with pytest.raises(ValueError, match=f"schedule.name='{name}'"):
        make_schedule(name)


@pytest.mark.parametrize("name", ["linear", "cosine", "polynomial", "sigmoid"])
@pytest.mark.parametrize("T", [1, 0, -5])
def test_too_few_timesteps_raises_naming_value(name, T):
    with pytest.raises(ValueError, match=rf"^schedule.num_timesteps={T} must be an integer >= 2$"):
        make_schedule(name, num_timesteps=T, **({"rescale_to_timesteps": False} if name == "linear" else {}))


def test_unknown_kwarg_is_value_error():
    with pytest.raises(ValueError, match="power"):
        make_schedule("cosine", num_timesteps=100, power=2.0)


# ----------------------------------------------------------------------------------------------- zero terminal SNR


@pytest.mark.parametrize(
    ("name", "kwargs"), [("linear", {}), ("polynomial", {"beta_start": 0.00085, "beta_end": 0.012, "power": 2.0})]
)
def test_rescale_betas_zero_snr_lin_et_al_alg1(name, kwargs):
    base = make_schedule(name, num_timesteps=1000, **kwargs)
    resc = make_schedule(name, num_timesteps=1000, rescale_betas_zero_snr=True, **kwargs)

    # Lin et al. 2023, Alg. 1, in numpy: shift sqrt(alpha-bar) so the last is 0, scale so the first is kept.
    betas = base.betas.numpy().copy()
    sqrt_ab = np.sqrt(np.cumprod(1.0 - betas))
    a0, aT = sqrt_ab[0], sqrt_ab[-1]
    new_sqrt_ab = (sqrt_ab - aT) * a0 / (a0 - aT)
    new_ab = new_sqrt_ab**2
    new_betas = 1.0 - np.concatenate([new_ab[:1], new_ab[1:] / new_ab[:-1]])
    assert new_betas[-1] == 1.0  # zero SNR: the last step destroys all signal

    np.testing.assert_allclose(resc.betas.numpy()[:-1], new_betas[:-1], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(resc.alphas_cumprod.numpy()[:-1], new_ab[:-1], rtol=1e-9, atol=0)
    # First sqrt(alpha-bar) unchanged, last alpha-bar ~ 0 (the terminal beta is kept a hair below 1).
    assert math.sqrt(resc.alphas_cumprod[0].item()) == pytest.approx(a0, rel=1e-13)
    assert resc.alphas_cumprod[-1].item() < 1e-12
    assert resc.snr[-1].item() < 1e-12
    assert base.snr[-1].item() > 1e-5
    b = resc.betas.numpy()
    assert np.all((b > 0) & (b < 1)) and b[-1] > 1 - 1e-9
    # The rescaling raises the noise level everywhere after the first step.
    assert np.all(resc.alphas_cumprod.numpy()[1:] < base.alphas_cumprod.numpy()[1:])
