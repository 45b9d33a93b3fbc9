"""DPM-Solver++(3M), DPM-Solver++(2M) SDE and UniPC, and the logsnr / karras_sigmas noise levels of the multistep
family (dpmpp_2m too): against diffusers, on Gaussian data where the exact answers are known, and their options.

Against diffusers: the schedule, model and start noise of tests/samplers/test_diffusers_reference.py (imported from
there; its docstring says why the schedule is built from diffusers' float32 alpha-bars). The SDE sampler draws its
noise with ``randn_like(x, generator)``; diffusers is handed the same draws, in the same order, as ``variance_noise``.
For karras_sigmas / logsnr, difflab's timesteps are diffusers' own (consecutive repeats merged) and the solver uses
those timesteps' noise levels (src/difflab/samplers/multistep.py says why), so the samples are compared with diffusers
run on difflab's timesteps at their own noise levels.

Gaussian data: x0 ~ N(MU, COV) in 2-D on a schedule uniform in lambda = log(alpha / sigma) from 4 (t = 0) to -5
(t = T - 1), so every spacing's levels are (nearly) exact timesteps and the grid can be refined everywhere (the T = 1000
linear schedule cannot: its lambda jumps by 0.4 between t = 0 and t = 1, and those steps cap any solver's
convergence). In the eigenbasis V of COV (variances SD^2) each coordinate z = V^T (x_t - a MU) is N(0, abar SD^2 + 1 -
abar) and the optimal x0 prediction is MU + V diag(a SD^2 / (abar SD^2 + 1 - abar)) z; the probability-flow ODE keeps
each standardised z fixed, which gives the exact ODE solution from t = T - 1 to t = 0.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

diffusers = pytest.importorskip("diffusers")

from test_diffusers_reference import PRED, _max_diff, _run_diffusers, make_model, x_T  # noqa: E402
from test_fast_samplers import _check_sample_moments  # noqa: E402

from difflab.configs import CONFIG_DIR  # noqa: E402
from difflab.diffusion import make_schedule  # noqa: E402
from difflab.diffusion.schedules import NoiseSchedule  # noqa: E402
from difflab.samplers import SAMPLERS, make_sampler, randn_like  # noqa: E402
from difflab.samplers.dpm_solver import DPMSolverPP3MSampler  # noqa: E402
from difflab.samplers.multistep import multistep_x0  # noqa: E402

T = 1000
TOL = 1e-5
NEW = ["dpmpp_3m", "dpmpp_2m_sde", "unipc"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    """difflab's schedule with diffusers' float32 alpha-bars (test_diffusers_reference.py)."""
    ab = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="linear").alphas_cumprod.double()
    return NoiseSchedule("diffusers-linear", 1.0 - ab / torch.cat([ab.new_ones(1), ab[:-1]]))


def reference(name: str, prediction_type: str = "eps", **kwargs):
    """diffusers' scheduler that difflab's sampler ``name`` equals (module docstring of each sampler)."""
    common = dict(num_train_timesteps=T, beta_schedule="linear", prediction_type=PRED[prediction_type], **kwargs)
    if name == "unipc":
        return diffusers.UniPCMultistepScheduler(solver_order=2, solver_type="bh2", predict_x0=True, **common)
    algorithm = "sde-dpmsolver++" if name == "dpmpp_2m_sde" else "dpmsolver++"
    return diffusers.DPMSolverMultistepScheduler(
        algorithm_type=algorithm, solver_order=3 if name == "dpmpp_3m" else 2, solver_type="midpoint", **common
    )


def run_reference(ref, model, x, seed: int | None = None) -> torch.Tensor:
    """diffusers' loop; for the SDE, the noise difflab draws from ``Generator(seed)`` (one draw per step that does
    not end at sigma = 0) is handed to diffusers as ``variance_noise``."""
    if seed is None:
        return _run_diffusers(ref, model, x, ref.timesteps)
    g = torch.Generator().manual_seed(seed)
    for t, sigma_next in zip(ref.timesteps, ref.sigmas[1:]):
        noise = randn_like(x, g) if sigma_next > 0 else torch.zeros_like(x)
        x = ref.step(model(x, t.expand(x.shape[0])), t, x, variance_noise=noise).prev_sample
    return x


def sample_both(name, schedule, steps, prediction_type="eps", ref=None, seed=7, **options):
    ours = make_sampler(name, schedule=schedule, steps=steps, **options)
    if ref is None:
        ref = reference(name, prediction_type, timestep_spacing="trailing", **options)
        ref.set_timesteps(steps)
        np.testing.assert_array_equal(ref.timesteps.numpy(), ours.timesteps)
    seed = seed if name == "dpmpp_2m_sde" else None
    model = make_model(schedule, prediction_type)
    g = None if seed is None else torch.Generator().manual_seed(seed)
    return ours, ours.sample(model, x_T(), prediction_type, g), run_reference(ref, model, x_T(), seed)


# ------------------------------------------------------------------------------------------------ against diffusers


@pytest.mark.parametrize("steps", [2, 5, 10, 14, 15, 20, 50])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("name", NEW)
def test_matches_diffusers(schedule, name, steps, prediction_type):
    """Default settings (trailing spacing, final sigma 0, lower_order_final): measured max deviations 1.2e-6 (3M),
    1.8e-6 (SDE), 1.1e-6 (UniPC). (At 1 step all are DDIM's one step from t = 999 and differ from diffusers' float32 by
    2e-5, the x0 conversion at alpha = 0.006.)"""
    ours, a, b = sample_both(name, schedule, steps, prediction_type)
    assert ours.nfe == steps
    assert _max_diff(a, b) < TOL, _max_diff(a, b)


def test_the_sde_noise_matters_and_is_the_generators(schedule):
    _, a, _ = sample_both("dpmpp_2m_sde", schedule, 10, seed=7)
    _, c, _ = sample_both("dpmpp_2m_sde", schedule, 10, seed=8)
    assert _max_diff(a, c) > 1e-2


@pytest.mark.parametrize("steps", [6, 20])
@pytest.mark.parametrize("lower_order_final", [True, False])
@pytest.mark.parametrize("name", NEW)
def test_sigma_min_and_lower_order_final_match_diffusers(schedule, name, steps, lower_order_final):
    """final_sigmas_type='sigma_min' ends at sigma of t = 0, so the last steps' orders matter (measured <= 3.9e-6)."""
    _, a, b = sample_both(name, schedule, steps, final_sigmas_type="sigma_min", lower_order_final=lower_order_final)
    assert _max_diff(a, b) < TOL, _max_diff(a, b)


@pytest.mark.parametrize("name", NEW)
def test_thresholding_matches_diffusers(schedule, name):
    thresh = {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.2}
    _, a, b = sample_both(name, schedule, 12, **thresh)
    _, plain, _ = sample_both(name, schedule, 12)
    assert _max_diff(a, b) < TOL and _max_diff(a, plain) > 1e-2, (_max_diff(a, b), _max_diff(a, plain))


DIFFUSERS_LEVELS = {"karras_sigmas": "use_karras_sigmas", "logsnr": "use_lu_lambdas"}


def levels_option(levels: str) -> dict:
    return {"karras_sigmas": True} if levels == "karras_sigmas" else {"timestep_spacing": "logsnr"}


@pytest.mark.parametrize("steps", [3, 6, 12, 30, 40, 100])
@pytest.mark.parametrize("levels", ["karras_sigmas", "logsnr"])
def test_level_timesteps_are_diffusers(schedule, levels, steps):
    """diffusers' timesteps for use_karras_sigmas / use_lu_lambdas (its levels' log-linear timesteps, rounded), with
    consecutive repeats merged (logsnr from 40 steps, karras_sigmas from 79 on T = 1000 linear, with a warning)."""
    ref = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=T, beta_schedule="linear",
                                                **{DIFFUSERS_LEVELS[levels]: True})
    ref.set_timesteps(steps)
    theirs = ref.timesteps.numpy()
    distinct = theirs[np.r_[True, np.diff(theirs) != 0]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = {name: make_sampler(name, schedule=schedule, steps=steps, **levels_option(levels)) for name in
                ("dpmpp_2m", *NEW)}
    for sampler in ours.values():
        np.testing.assert_array_equal(sampler.timesteps, distinct)
    kind = "rho-levels" if levels == "karras_sigmas" else "log-SNR levels"
    merged = [str(w.message) for w in caught if kind in str(w.message)]
    assert len(merged) == (4 if len(distinct) < steps else 0), merged
    assert all(w.filename.endswith("__init__.py") for w in caught)  # reported at make_sampler's call
    if levels == "karras_sigmas":  # UniPC's karras timesteps are the DPM scheduler's
        uni = diffusers.UniPCMultistepScheduler(num_train_timesteps=T, beta_schedule="linear", use_karras_sigmas=True)
        uni.set_timesteps(steps)
        np.testing.assert_array_equal(uni.timesteps.numpy(), theirs)


@pytest.mark.parametrize("steps", [8, 12, 30])
@pytest.mark.parametrize("levels", ["karras_sigmas", "logsnr"])
@pytest.mark.parametrize("name", ["dpmpp_2m", *NEW])
def test_level_spacings_match_diffusers_on_the_same_timesteps(schedule, name, levels, steps):
    """diffusers run on difflab's timesteps at their own noise levels (DPM: custom ``timesteps``; UniPC takes none,
    so its timesteps and sigmas are set after ``set_timesteps``); measured <= 2.4e-6. (With 6 or 7 karras steps
    dpmpp_3m reaches 9.5e-6: a third-order step after steps of very different sizes amplifies diffusers' float32
    arithmetic; difflab in float32 differs from itself in float64 by 7.8e-6 there.)"""
    ours = make_sampler(name, schedule=schedule, steps=steps, **levels_option(levels))
    ref = reference(name)
    if name == "unipc":
        ref.set_timesteps(len(ours.timesteps))
        ref.timesteps = torch.from_numpy(ours.timesteps.copy())
        ab = schedule.alphas_cumprod[torch.from_numpy(ours.timesteps)]
        ref.sigmas = torch.cat([((1 - ab) / ab).sqrt(), ab.new_zeros(1)]).float()
    else:
        ref.set_timesteps(timesteps=ours.timesteps.tolist())
    _, a, b = sample_both(name, schedule, steps, ref=ref, **levels_option(levels))
    assert _max_diff(a, b) < TOL, _max_diff(a, b)


def test_diffusers_exact_levels_differ_by_the_timestep_rounding(schedule):
    """diffusers keeps the exact rho-levels in the solver while calling the model at the rounded timestep; difflab
    uses the timesteps' own levels. On this model the two differ by ~1e-3 (measured 2.1e-3 at 10 steps)."""
    ref = reference("dpmpp_2m", use_karras_sigmas=True)
    ref.set_timesteps(10)
    _, a, b = sample_both("dpmpp_2m", schedule, 10, ref=ref, karras_sigmas=True)
    assert 1e-4 < _max_diff(a, b) < 1e-2, _max_diff(a, b)


# ------------------------------------------------------------------------------------------------ exact identities


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_dpmpp_3m_is_2m_until_a_step_can_be_third_order(schedule, steps):
    """Steps 1 and 2 are first and second order; with fewer than 15 steps the last is first order and the one before
    at most second, so the first third-order step is step 3 of 5."""
    model = make_model(schedule)
    a = make_sampler("dpmpp_3m", schedule=schedule, steps=steps).sample(model, x_T())
    b = make_sampler("dpmpp_2m", schedule=schedule, steps=steps).sample(model, x_T())
    assert (_max_diff(a, b) == 0.0) if steps < 5 else (_max_diff(a, b) > 1e-4), _max_diff(a, b)


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_dpmpp_2m_sde_first_step_is_ddim_eta1(schedule, spacing):
    """The SDE's first-order step is DDIM with eta = 1 (sigma_n sqrt(1 - exp(-2h)) is DDIM's sigma): with 2 steps
    (a first-order step, then x0) both give the same samples from the same noise."""
    model = make_model(schedule)
    a = make_sampler("dpmpp_2m_sde", schedule=schedule, steps=2, timestep_spacing=spacing).sample(
        model, x_T(), generator=torch.Generator().manual_seed(3))
    b = make_sampler("ddim", schedule=schedule, steps=2, eta=1.0, timestep_spacing=spacing).sample(
        model, x_T(), generator=torch.Generator().manual_seed(3))
    assert _max_diff(a, b) < 1e-12, _max_diff(a, b)


def test_dpmpp_2m_sde_noise_is_per_sample(schedule):
    """With one generator per sample, sample i depends on its own generator only (the batch does not matter)."""
    model = make_model(schedule)
    sampler = make_sampler("dpmpp_2m_sde", schedule=schedule, steps=8)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    full = sampler.sample(model, x_T(), generator=gens([10, 11, 12, 13]))
    alone = sampler.sample(model, x_T()[2:3], generator=gens([12]))
    assert torch.equal(full[2:3], alone)
    swapped = sampler.sample(model, x_T(), generator=gens([10, 11, 99, 13]))
    assert torch.equal(swapped[[0, 1, 3]], full[[0, 1, 3]]) and _max_diff(swapped[2], full[2]) > 1e-2


# ------------------------------------------------------------------------------------------------ Gaussian target

_ANGLE = 0.61
V = np.array([[math.cos(_ANGLE), -math.sin(_ANGLE)], [math.sin(_ANGLE), math.cos(_ANGLE)]])
SD = np.array([0.3, 1.1])
MU = np.array([0.4, -0.2])
COV = V @ np.diag(SD**2) @ V.T
LAMBDAS = np.linspace(4.0, -5.0, T)  # lambda of t = 0 .. T - 1


@pytest.fixture(scope="module")
def logsnr_schedule() -> NoiseSchedule:
    ab = torch.from_numpy(1.0 / (1.0 + np.exp(-2.0 * LAMBDAS)))
    return NoiseSchedule("uniform-logsnr", 1.0 - ab / torch.cat([ab.new_ones(1), ab[:-1]]))


def shrink(abar: np.ndarray) -> np.ndarray:
    """Per eigen-direction, the optimal x0 prediction's factor a SD^2 / (abar SD^2 + 1 - abar) on z."""
    abar = np.asarray(abar)[..., None]
    return np.sqrt(abar) * SD**2 / (abar * SD**2 + 1.0 - abar)


def optimal_eps(schedule: NoiseSchedule):
    """The optimal eps prediction for N(MU, COV) data on ``schedule`` (module docstring)."""
    table = schedule.alphas_cumprod.numpy()

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = table[t.numpy()][:, None]
        xs = x.double().numpy()
        z = (xs - np.sqrt(ab) * MU) @ V
        x0 = MU + (shrink(ab[:, 0]) * z) @ V.T
        return torch.from_numpy((xs - np.sqrt(ab) * x0) / np.sqrt(1.0 - ab)).to(x.dtype)

    return model_fn


def start(schedule: NoiseSchedule, n: int, seed: int) -> np.ndarray:
    """n draws of x_t at t = T - 1 from the exact marginal N(a MU, abar COV + (1 - abar) I)."""
    ab = schedule.alphas_cumprod[-1].item()
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    return math.sqrt(ab) * MU + (z * np.sqrt(ab * SD**2 + 1.0 - ab)) @ V.T


def ode_error(schedule: NoiseSchedule, name: str, steps: int) -> float:
    """RMS distance to the exact PF-ODE solution from the same x_T at t = T - 1, ended as the samplers end: the x0
    prediction at t = 0 of the exact solution there (the same last step for every sampler)."""
    sampler = make_sampler(name, schedule=schedule, steps=steps, timestep_spacing="logsnr")
    assert sampler.timesteps[0] == T - 1 and sampler.timesteps[-1] == 0 and len(sampler.timesteps) == steps
    x = start(schedule, 2048, seed=5)
    out = sampler.sample(optimal_eps(schedule), torch.from_numpy(x)).numpy()
    ab_T, ab_0 = schedule.alphas_cumprod[-1].item(), schedule.alphas_cumprod[0].item()
    z_T = (x - math.sqrt(ab_T) * MU) @ V
    z_0 = z_T * np.sqrt((ab_0 * SD**2 + 1.0 - ab_0) / (ab_T * SD**2 + 1.0 - ab_T))
    exact = MU + (shrink(ab_0) * z_0) @ V.T
    return math.sqrt(np.mean((out - exact) ** 2))


STEPS = np.array([16, 32, 64, 128])


def orders(errors: np.ndarray) -> np.ndarray:
    return np.log(errors[:-1] / errors[1:]) / np.log(STEPS[1:] / STEPS[:-1])


@pytest.mark.parametrize(("name", "band"), [
    ("dpmpp_2m", (1.8, 2.2)),  # measured 1.92 2.01 2.01 (errors 1.5e-2 ... 2.5e-4)
    ("unipc", (2.7, 3.3)),  # measured 2.93 3.02 3.02 (errors 1.2e-2 ... 2.4e-5): UniC raises UniP-2 to third order
])
def test_ode_solvers_converge_at_their_order(logsnr_schedule, name, band):
    errors = np.array([ode_error(logsnr_schedule, name, s) for s in STEPS])
    assert np.all((orders(errors) > band[0]) & (orders(errors) < band[1])), (errors, orders(errors))


def test_dpmpp_3m_converges_at_second_order_with_a_smaller_error(logsnr_schedule):
    """diffusers' third-order multistep step (which dpmpp_3m equals) weights its second difference half as much as
    the Taylor expansion does (``test_dpmpp_3m_step_is_exact_to_first_order_only_in_x0``), so its local error is
    O(h^3) and it converges at second order: measured 2.65 2.25 2.09, errors 1.1e-2, 1.8e-3, 3.7e-4, 8.7e-5, i.e.
    2.3-2.9x below dpmpp_2m's from 32 steps on."""
    errors = np.array([ode_error(logsnr_schedule, "dpmpp_3m", s) for s in STEPS])
    assert np.all((orders(errors) > 1.9) & (orders(errors) < 2.9)) and orders(errors)[-1] < 2.3, orders(errors)
    two_m = np.array([ode_error(logsnr_schedule, "dpmpp_2m", s) for s in STEPS[1:]])
    assert np.all(errors[1:] < two_m / 2), (errors[1:], two_m)


def test_dpmpp_3m_step_is_exact_to_first_order_only_in_x0():
    """The x0 estimate D of a third-order step (x_n = (sigma_n / sigma_s) x + alpha_n phi_1 D) against the D that
    integrates x0(lambda) exactly: exact for x0 linear in lambda; for x0 quadratic in lambda off by phi_3 / phi_1 times
    diffusers' D2 ~ h^2 x0'' / 2, i.e. O(h^2) in D (4x smaller per halving of h) and O(h^3) in x. Counting that term
    twice makes it exact there too (a third-order step, but no longer diffusers')."""
    def local_error(f, h: float, d2_weight: float = 1.0) -> float:
        lam = 0.2 - h * np.arange(3.0)  # lambda_s and the two before it, uniform
        x0s = [torch.tensor([f(v)], dtype=torch.float64) for v in lam[::-1]]
        d = multistep_x0(x0s, [h, h], h, 3).item()
        phi_1, phi_3 = -math.expm1(-h), 0.5 - (h + math.expm1(-h)) / h**2
        d += (d2_weight - 1.0) * (phi_3 / phi_1) * ((f(lam[0]) - 2 * f(lam[1]) + f(lam[2])) / 2)
        u = np.linspace(0.0, h, 20001)  # exact: exp(-h) int_0^h exp(u) x0(lambda_s + u) du / (1 - exp(-h))
        exact = np.trapezoid(np.exp(u - h) * f(0.2 + u), u) / phi_1
        return d - exact

    linear, quadratic = (lambda v: 1.0 + 0.3 * v), (lambda v: 1.0 + 0.3 * v + 0.5 * v**2)
    assert abs(local_error(linear, 0.2)) < 1e-9
    errs = np.array([local_error(quadratic, h) for h in (0.2, 0.1, 0.05)])
    assert np.all(np.abs(errs) > 1e-5) and np.all(np.abs(errs[:-1] / errs[1:] - 4.0) < 0.3), errs  # D error O(h^2)
    assert abs(local_error(quadratic, 0.1, d2_weight=2.0)) < 1e-9
    assert DPMSolverPP3MSampler.solver_order == 3


def sde_variances(abars: np.ndarray) -> np.ndarray:
    """Exact output variance per eigen-direction of DPM-Solver++(2M) SDE (Lu et al. 2022) with the optimal model,
    started from the exact marginal, written from the paper's update independently of difflab: with y = z (centred,
    per direction) and k the shrink factor, y_n = A y_s + B y_{s-1} + sigma_n sqrt(1 - e^{-2h}) w with
    A = (sigma_n / sigma_s) e^{-h} + alpha_n (1 - e^{-2h}) (1 + 1/(2r)) k_s, B = -alpha_n (1 - e^{-2h}) k_{s-1} / (2r)
    (first order, the first step: 1/(2r) -> 0); the mean stays a MU exactly. Propagates Cov(y_i, y_{i-1}) per
    direction; the last step (to sigma = 0) returns the x0 prediction k y."""
    n = len(abars) - 1
    a, s = np.sqrt(abars), np.sqrt(1.0 - abars)
    lam = np.log(a[:-1] / s[:-1])
    k = shrink(abars[:-1])
    var, cov, var_prev = abars[0] * SD**2 + 1.0 - abars[0], np.zeros(2), np.zeros(2)
    for i in range(n - 1):
        h = math.log(a[i + 1] / s[i + 1]) - lam[i]
        keep = -math.expm1(-2.0 * h)
        half_over_r = 0.0 if i == 0 else 0.5 * h / (lam[i] - lam[i - 1])
        A = s[i + 1] / s[i] * math.exp(-h) + a[i + 1] * keep * (1.0 + half_over_r) * k[i]
        B = -a[i + 1] * keep * half_over_r * k[i - 1]
        var, cov, var_prev = (A * A * var + 2 * A * B * cov + B * B * var_prev + s[i + 1] ** 2 * keep,
                              A * var + B * cov, var)
    return k[-1] ** 2 * var


@pytest.mark.parametrize("steps", [10, 25])
def test_dpmpp_2m_sde_samples_have_the_exact_moments(logsnr_schedule, steps):
    """20000 samples agree with the exact recursion's mean MU and covariance V diag(var) V^T."""
    sampler = make_sampler("dpmpp_2m_sde", schedule=logsnr_schedule, steps=steps, timestep_spacing="logsnr")
    abars = np.append(logsnr_schedule.alphas_cumprod[torch.from_numpy(sampler.timesteps)].numpy(), 1.0)
    x = sampler.sample(optimal_eps(logsnr_schedule), torch.from_numpy(start(logsnr_schedule, 20_000, steps)),
                       generator=torch.Generator().manual_seed(steps)).numpy()
    _check_sample_moments(x, MU, V @ np.diag(sde_variances(abars)) @ V.T)


def test_dpmpp_2m_sde_distribution_converges(logsnr_schedule):
    """The exact output variance approaches SD^2 as steps grow (mean exact at every step count): max relative error
    measured 6.2%, 1.7%, 0.41%, 0.26% at 20, 40, 80, 160 steps."""
    errors = []
    for steps in (20, 40, 80, 160):
        sampler = make_sampler("dpmpp_2m_sde", schedule=logsnr_schedule, steps=steps, timestep_spacing="logsnr")
        abars = np.append(logsnr_schedule.alphas_cumprod[torch.from_numpy(sampler.timesteps)].numpy(), 1.0)
        errors.append(np.abs(sde_variances(abars) / SD**2 - 1.0).max())
    assert np.all(np.diff(errors) < 0) and errors[0] > 0.03 and errors[-1] < 0.005, errors


# ------------------------------------------------------------------------------------------------ options, configs


@pytest.mark.parametrize(("name", "options", "match"), [
    ("unipc", {"timestep_spacing": "uniform"}, r"sampler\.timestep_spacing='uniform' is not known; choose one of "
                                                r"\['leading', 'linspace', 'trailing', 'logsnr'\]"),
    ("ddim", {"timestep_spacing": "logsnr"},
     r"sampler\.timestep_spacing='logsnr' is not known; choose one of \['leading', 'linspace', 'trailing'\]"),
    ("dpmpp_3m", {"final_sigmas_type": "min"}, r"sampler\.final_sigmas_type='min' is not known; choose one of "
                                                r"\['zero', 'sigma_min'\]"),
    ("dpmpp_2m_sde", {"karras_sigmas": True, "timestep_spacing": "logsnr"},
     r"sampler\.karras_sigmas=True and sampler\.timestep_spacing='logsnr' each choose the noise levels"),
    ("unipc", {"karras_sigmas": True, "final_sigmas_type": "sigma_min"},
     r"final_sigmas_type='sigma_min'.*karras_sigmas=True.*use timestep_spacing='trailing' without karras_sigmas"),
    ("dpmpp_2m", {"timestep_spacing": "logsnr", "final_sigmas_type": "sigma_min"},
     r"final_sigmas_type='sigma_min'.*timestep_spacing='logsnr'"),
    ("dpmpp_3m", {"karras_sigmas": True, "rho": 0}, r"sampler\.rho=0 must be a number > 0"),
    ("unipc", {"eta": 0.5}, r"sampler option 'eta' is not known for sampler\.name='unipc'"),
])
def test_bad_options_raise_naming_them(schedule, name, options, match):
    with pytest.raises(ValueError, match=match):
        make_sampler(name, schedule=schedule, steps=10, **options)


@pytest.mark.parametrize("name", NEW)
def test_conf_files_instantiate(name):
    node = OmegaConf.load(Path(CONFIG_DIR) / "sampler" / f"{name}.yaml")
    sampler = instantiate(node)(schedule=make_schedule("linear", num_timesteps=T))
    assert type(sampler) is SAMPLERS[name] and sampler.steps == node.steps
    assert len(sampler.timesteps) == node.steps and sampler.timesteps[0] == T - 1  # trailing
