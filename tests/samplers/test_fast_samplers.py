r"""DPM-Solver++(2M), Euler and Heun (and the learned-range DDPM variance) on Gaussian data, where everything is
closed form.

Data x0 ~ N(MU, COV). With a = sqrt(abar_t), x_t ~ N(a MU, abar_t COV + (1 - abar_t) I) and the optimal (MMSE) eps
predictor is the linear regression E[eps | x_t] = sqrt(1 - abar_t) (abar_t COV + (1 - abar_t) I)^{-1} (x_t - a MU).
In the variance-exploding variables x = x_t / a, sigma^2 = (1 - abar) / abar (Karras et al. 2022), x ~ N(MU, COV +
sigma^2 I), the denoiser is D(x; sigma) = MU + COV (COV + sigma^2 I)^{-1} (x - MU) and the probability-flow ODE
dx/dsigma = (x - D) / sigma = sigma (COV + sigma^2 I)^{-1} (x - MU) is solved by x(sigma) - MU = (COV + sigma^2 I)^{1/2}
(COV + sigma_T^2 I)^{-1/2} (x(sigma_T) - MU) (all matrices are functions of COV, so they commute).

With the linear optimal model every deterministic sampler here is an affine map of x_T, so the exact mean and
covariance of its output follow from d + 1 runs (``affine_moments``); for Euler/Heun with churn (Karras Alg. 2) the
moments are propagated by an independent numpy implementation of the paper's recursion (``karras_moments``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from difflab.diffusion import make_schedule, split_output
from difflab.samplers import SAMPLERS, make_sampler

T = 1000
ABAR = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
SIGMA = np.sqrt((1.0 - ABAR) / ABAR)
Z = 4.5
# Many Karras levels near sigma_min merge (T = 1000 linear, from 79 steps on); that warning is tested in
# test_fast_samplers.py::test_nfe_with_merged_karras_levels and expected elsewhere.

# 2-D correlated Gaussian: eigenvalues 0.3^2 and 1.1^2 along axes rotated by 35 degrees
_R = np.array([[math.cos(0.61), -math.sin(0.61)], [math.sin(0.61), math.cos(0.61)]])
MU = np.array([0.4, -0.2])
COV = _R @ np.diag([0.3**2, 1.1**2]) @ _R.T


pytestmark = [
    pytest.mark.filterwarnings("ignore:sampler.karras_sigmas:UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("linear", num_timesteps=T)


def gaussian_model(prediction_type: str = "eps", mu=MU, cov=COV):
    """E[target | x_t] for x0 ~ N(mu, cov) (module docstring), float64 inside; counts its calls."""
    mu_t, cov_t = (
        torch.from_numpy(np.asarray(mu, dtype=np.float64)),
        torch.from_numpy(np.asarray(cov, dtype=np.float64)),
    )
    eye = torch.eye(mu_t.numel(), dtype=torch.float64)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        model_fn.calls += 1
        ab = torch.from_numpy(ABAR)[t].view(-1, 1, 1)
        a, s = ab.sqrt(), (1.0 - ab).sqrt()
        centred = x.double() - a[:, 0] * mu_t
        eps = s[:, 0] * torch.linalg.solve(ab * cov_t + (1.0 - ab) * eye, centred.unsqueeze(-1)).squeeze(-1)
        x0 = (x.double() - s[:, 0] * eps) / a[:, 0]
        return {"eps": eps, "x0": x0, "v": a[:, 0] * eps - s[:, 0] * x0}[prediction_type].to(x.dtype)

    model_fn.calls = 0
    return model_fn


def marginal_params(t: int, mu=MU, cov=COV):
    ab = ABAR[t]
    return math.sqrt(ab) * np.asarray(mu), ab * np.asarray(cov) + (1.0 - ab) * np.eye(len(mu))


def marginal_sample(t: int, n: int, seed: int, mu=MU, cov=COV) -> torch.Tensor:
    m, c = marginal_params(t, mu, cov)
    z = torch.randn(n, len(mu), generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
    return torch.from_numpy(m + z @ np.linalg.cholesky(c).T)


def mat_power(c: np.ndarray, p: float) -> np.ndarray:
    vals, vecs = np.linalg.eigh(c)
    return vecs @ np.diag(vals**p) @ vecs.T


def affine_moments(sampler, t0: int):
    """Exact output mean and covariance of a sampler that is affine in x_T, from d + 1 runs in float64."""
    m, c = marginal_params(t0)
    pts = torch.from_numpy(np.vstack([m, m + np.eye(len(m))]))
    out = sampler.sample(gaussian_model(), pts).numpy()
    A = (out[1:] - out[0]).T
    return out[0], A @ c @ A.T


def _check_sample_moments(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> None:
    n = x.shape[0]
    se_m = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) < Z * se_m), (x.mean(0) - mean) / se_m
    se_c = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(x.T) - cov) < Z * se_c), (np.cov(x.T) - cov) / se_c


# ------------------------------------------------------------------------------------------------ nfe


@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("dpmpp_2m", {"steps": 10}, 10),
    ("dpmpp_2m", {"steps": 1}, 1),
    ("dpmpp_2m", {"steps": 7, "final_sigmas_type": "sigma_min"}, 7),
    ("euler", {"steps": 10}, 10),
    ("euler", {"steps": 10, "s_churn": 5.0}, 10),
    ("euler", {"steps": 30, "karras_sigmas": True}, 30),
    ("heun", {"steps": 10}, 19),
    ("heun", {"steps": 1}, 1),
    ("heun", {"steps": 25, "karras_sigmas": True, "s_churn": 20.0}, 49),
    ("ddpm", {"steps": 20, "variance_type": "learned_range"}, 20),
])
def test_nfe(schedule, name, kwargs, expected):
    sampler = make_sampler(name, schedule=schedule, **kwargs)
    learned = kwargs.get("variance_type") == "learned_range"
    for _ in range(2):  # nfe counts one call
        model = gaussian_model()
        fn = (lambda x, t: torch.cat([model(x, t), torch.zeros_like(x)], dim=1)) if learned else model
        sampler.sample(fn, marginal_sample(int(sampler.timesteps[0]), 8, 0), generator=torch.Generator().manual_seed(0))
        assert sampler.nfe == expected == model.calls


def test_nfe_with_merged_karras_levels(schedule):
    """From 79 steps on, T = 1000 linear, two rho-levels near sigma_min map to one timestep and are merged."""
    for steps, distinct in ((78, 78), (79, 78), (200, 193)):
        for name, per in (("euler", lambda n: n), ("heun", lambda n: 2 * n - 1)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sampler = make_sampler(name, schedule=schedule, steps=steps, karras_sigmas=True)
            messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
            if distinct < steps:
                assert messages == [
                    f"sampler.karras_sigmas: the {steps} rho-levels map to only {distinct} distinct timesteps "
                    f"of the schedule (levels closer together than the schedule's own noise levels are merged); "
                    f"the sampler takes {distinct} steps"
                ], messages
                assert caught[0].filename.endswith("__init__.py")  # reported at make_sampler's call of the constructor
            else:
                assert messages == []
            assert len(sampler.timesteps) == distinct
            model = gaussian_model()
            sampler.sample(model, torch.zeros(2, 2))
            assert sampler.nfe == model.calls == per(distinct)


# ------------------------------------------------------------------------------------------------ timesteps / sigmas


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 40, 78, 150])
@pytest.mark.parametrize("rho", [7.0, 3.0])
def test_karras_timesteps_are_nearest_in_log_sigma(schedule, steps, rho):
    """Independent computation: eq. 5 of Karras et al. between sigma_{T-1} and sigma_0, then argmin |log sigma_t -
    log sigma_i| over integer t, consecutive duplicates merged; the solver uses those timesteps' exact sigmas."""
    sampler = make_sampler("heun", schedule=schedule, steps=steps, karras_sigmas=True, rho=rho)
    i = np.arange(steps)
    ramp = i / (steps - 1) if steps > 1 else i * 0.0
    levels = (SIGMA[-1] ** (1 / rho) + ramp * (SIGMA[0] ** (1 / rho) - SIGMA[-1] ** (1 / rho))) ** rho
    nearest = np.abs(np.log(SIGMA)[None, :] - np.log(levels)[:, None]).argmin(1)
    expected = nearest[np.r_[True, np.diff(nearest) != 0]]
    np.testing.assert_array_equal(sampler.timesteps, expected)
    np.testing.assert_allclose(sampler.sigmas, np.append(SIGMA[expected], 0.0), rtol=1e-12)
    assert sampler.timesteps[0] == T - 1 and (steps == 1 or sampler.timesteps[-1] == 0)
    assert np.all(np.diff(sampler.timesteps) < 0)


def test_euler_heun_use_timestep_spacing_without_karras(schedule):
    for spacing in ("leading", "linspace", "trailing"):
        ddim = make_sampler("ddim", schedule=schedule, steps=13, timestep_spacing=spacing)
        for name in ("euler", "heun"):
            s = make_sampler(name, schedule=schedule, steps=13, timestep_spacing=spacing)
            np.testing.assert_array_equal(s.timesteps, ddim.timesteps)
            np.testing.assert_allclose(s.sigmas, np.append(SIGMA[ddim.timesteps], 0.0), rtol=1e-12)


def test_dpmpp_2m_default_spacing_is_trailing(schedule):
    np.testing.assert_array_equal(
        make_sampler("dpmpp_2m", schedule=schedule, steps=10).timesteps, np.arange(999, 0, -100)
    )


# ------------------------------------------------------------------------------------------------ exact identities


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_euler_is_ddim_eta0(schedule, spacing, prediction_type):
    """Karras et al. 2022 (eq. 4 / App. B.2): DDIM's deterministic step is an Euler step in (x / sqrt(abar), sigma):
    x'/sqrt(abar') = x0 + sigma' eps = x/sqrt(abar) + (sigma' - sigma) eps."""
    x_T = marginal_sample(999, 500, 1)
    e = make_sampler("euler", schedule=schedule, steps=17, timestep_spacing=spacing).sample(
        gaussian_model(prediction_type), x_T, prediction_type
    )
    d = make_sampler("ddim", schedule=schedule, steps=17, timestep_spacing=spacing).sample(
        gaussian_model(prediction_type), x_T, prediction_type
    )
    np.testing.assert_allclose(e.numpy(), d.numpy(), rtol=0, atol=1e-11)


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_dpmpp_2m_first_order_steps_are_ddim(schedule, steps, spacing):
    """DPM-Solver++'s first-order step is DDIM (Lu et al. 2022, Sec. 4.1); with <= 2 steps both of dpmpp_2m's steps
    are first order (the first one always, the last one to sigma = 0 always)."""
    x_T = marginal_sample(999, 500, 2)
    a = make_sampler("dpmpp_2m", schedule=schedule, steps=steps, timestep_spacing=spacing).sample(gaussian_model(), x_T)
    b = make_sampler("ddim", schedule=schedule, steps=steps, timestep_spacing=spacing).sample(gaussian_model(), x_T)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12)
    if steps == 2:  # with 3 steps the middle one is second order and the results differ
        c = make_sampler("dpmpp_2m", schedule=schedule, steps=3, timestep_spacing=spacing).sample(gaussian_model(), x_T)
        d = make_sampler("ddim", schedule=schedule, steps=3, timestep_spacing=spacing).sample(gaussian_model(), x_T)
        assert np.abs(c.numpy() - d.numpy()).max() > 1e-3


@pytest.mark.parametrize(("name", "kwargs"), [
    ("dpmpp_2m", {"steps": 12}), ("euler", {"steps": 12}), ("heun", {"steps": 12, "karras_sigmas": True}),
    ("heun", {"steps": 12, "s_churn": 30.0}),
])
@pytest.mark.parametrize("prediction_type", ["x0", "v"])
def test_prediction_types_agree(schedule, name, kwargs, prediction_type):
    sampler = make_sampler(name, schedule=schedule, **kwargs)
    x_T = marginal_sample(int(sampler.timesteps[0]), 300, 3)
    ref = sampler.sample(gaussian_model("eps"), x_T, "eps", torch.Generator().manual_seed(4))
    out = sampler.sample(gaussian_model(prediction_type), x_T, prediction_type, torch.Generator().manual_seed(4))
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------------ PF-ODE convergence


def _pf_ode_error(schedule, name: str, steps: int, **kwargs) -> float:
    """RMS distance to the exact PF-ODE solution from the same x_T, ended as every sampler here ends.

    Runs start at t = 999 (linspace or Karras sigmas) and their last model evaluation is at t = 0 (sigma_0 = 0.01),
    whose x0 prediction is returned: the step sigma_0 -> 0 is the same Euler step for all, exact for none (it costs
    ~|z| sigma_0^2 / (2 * 0.3) ~ 2e-4 here). So the reference is that same final step applied to the exact ODE
    solution at sigma_0: D(x(sigma_0); sigma_0) with x(sigma) from the module docstring. What remains is the
    solver's error between sigma_{T-1} and sigma_0.
    """
    sampler = make_sampler(name, schedule=schedule, steps=steps, **kwargs)
    assert sampler.timesteps[0] == T - 1 and sampler.timesteps[-1] == 0
    x_T = marginal_sample(T - 1, 2048, seed=11)
    out = sampler.sample(gaussian_model(), x_T).numpy()
    s_T2, s_02 = SIGMA[-1] ** 2, SIGMA[0] ** 2
    y_T = x_T.numpy() / math.sqrt(ABAR[-1]) - MU
    y_0 = y_T @ (mat_power(COV + s_02 * np.eye(2), 0.5) @ mat_power(COV + s_T2 * np.eye(2), -0.5)).T
    exact = MU + y_0 @ (COV @ np.linalg.inv(COV + s_02 * np.eye(2))).T
    return math.sqrt(np.mean((out - exact) ** 2))


# (name, kwargs, steps, expected order, band for every per-doubling order, band for the fitted slope)
CONVERGENCE = [
    # measured orders 0.995 0.996 0.994 (errors 0.163 ... 0.021); Euler on the same timesteps is the same map
    ("ddim", {"timestep_spacing": "linspace"}, (10, 20, 40, 80), (0.9, 1.1), (0.93, 1.07)),
    ("euler", {"timestep_spacing": "linspace"}, (10, 20, 40, 80), (0.9, 1.1), (0.93, 1.07)),
    # measured 0.966 0.985 0.993 (78 steps: the most without merged levels)
    ("euler", {"karras_sigmas": True}, (10, 20, 40, 78), (0.85, 1.15), (0.9, 1.1)),
    # measured 2.21 2.06 2.02 (errors 0.058 ... 7.4e-4)
    ("heun", {"timestep_spacing": "linspace"}, (10, 20, 40, 80), (1.8, 2.4), (1.9, 2.3)),
    # measured 2.32 2.16 2.08
    ("heun", {"karras_sigmas": True}, (10, 20, 40, 78), (1.8, 2.5), (1.9, 2.4)),
    # DPM-Solver++(2M) on a grid uniform in t: the logSNR steps near t = 0 are large and their ratio r far from 1,
    # so the second order shows only from ~100 steps (measured 1.74 1.92 2.09 from 40 steps, errors 0.037 ... 7e-4;
    # ~1.4-1.5 below 40 steps)
    ("dpmpp_2m", {"timestep_spacing": "linspace"}, (40, 80, 160, 320), (1.6, 2.3), (1.75, 2.15)),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "steps", "band", "slope_band"), CONVERGENCE, ids=lambda v: str(v) if isinstance(v, str) else None
)
def test_convergence_order_to_the_pf_ode(schedule, name, kwargs, steps, band, slope_band):
    errors = np.array([_pf_ode_error(schedule, name, s, **kwargs) for s in steps])
    assert np.all(np.diff(errors) < 0), errors
    steps_eff = np.array([len(make_sampler(name, schedule=schedule, steps=s, **kwargs).timesteps) for s in steps])
    orders = np.log(errors[:-1] / errors[1:]) / np.log(steps_eff[1:] / steps_eff[:-1])
    assert np.all((orders > band[0]) & (orders < band[1])), orders
    slope = -np.polyfit(np.log(steps_eff), np.log(errors), 1)[0]
    assert slope_band[0] < slope < slope_band[1], slope


def test_second_order_beats_first_order_at_equal_nfe(schedule):
    """Same model evaluations (~80): Heun (40 steps) and DPM-Solver++ (80) are closer to the ODE than DDIM (80 steps):
    measured 0.0030 and 0.0112 vs 0.0206 (DPM-Solver++ is still pre-asymptotic on this uniform-t grid, see above)."""
    ddim = _pf_ode_error(schedule, "ddim", 80, timestep_spacing="linspace")
    heun = _pf_ode_error(schedule, "heun", 40, timestep_spacing="linspace")
    dpm = _pf_ode_error(schedule, "dpmpp_2m", 80, timestep_spacing="linspace")
    assert heun < ddim / 5 and dpm < ddim / 1.5, (ddim, heun, dpm)


# ---------------------------------------------------------------------------------------- Gaussian target moments


# (name, kwargs, steps, bound on |mean - MU|, bound on max |cov - COV| / max |COV|), tightening with the steps;
# bounds ~1.5x the exact values measured (in the comments).
GAUSSIAN_CASES = [
    # mean error 0 (to 1e-16) in every case: with the optimal linear model E[x] = a MU is kept exactly.
    # Exact relative covariance errors measured: in the comments.
    ("dpmpp_2m", {}, 10, 1e-12, 0.15),  # 0.098
    ("dpmpp_2m", {}, 25, 1e-12, 0.023),  # 0.015
    ("dpmpp_2m", {}, 100, 1e-12, 0.0026),  # 0.0017
    ("euler", {}, 25, 1e-12, 0.2),  # 0.137
    ("euler", {}, 100, 1e-12, 0.055),  # 0.036 (first order: /3.8 for 4x the steps)
    ("euler", {"karras_sigmas": True}, 25, 1e-12, 0.3),  # 0.202
    ("euler", {"karras_sigmas": True}, 100, 1e-12, 0.08),  # 0.053
    ("heun", {}, 10, 1e-12, 0.15),  # 0.101
    ("heun", {}, 25, 1e-12, 0.022),  # 0.0146 (second order: /6.9 for 2.5x the steps)
    ("heun", {"karras_sigmas": True}, 25, 1e-12, 0.075),  # 0.049
    ("heun", {"karras_sigmas": True}, 50, 1e-12, 0.017),  # 0.011
]


@pytest.mark.parametrize(
    ("name", "kwargs", "steps", "mean_tol", "cov_tol"),
    GAUSSIAN_CASES,
    ids=lambda v: str(v) if isinstance(v, (str, int)) else None,
)
def test_deterministic_samplers_on_gaussian_target(schedule, name, kwargs, steps, mean_tol, cov_tol):
    sampler = make_sampler(name, schedule=schedule, steps=steps, **kwargs)
    t0 = int(sampler.timesteps[0])
    mean, cov = affine_moments(sampler, t0)
    assert np.abs(mean - MU).max() < mean_tol, mean - MU
    rel = np.abs(cov - COV).max() / np.abs(COV).max()
    assert rel < cov_tol, rel
    x = sampler.sample(gaussian_model(), marginal_sample(t0, 20_000, seed=steps)).numpy()
    _check_sample_moments(x, mean, cov)


def karras_moments(sigmas: np.ndarray, second_order: bool, s_churn: float = 0.0, s_tmin: float = 0.0,
                   s_tmax: float = math.inf, s_noise: float = 1.0):
    """Karras et al. 2022, Alg. 2, for x0 ~ N(MU, COV), written from the paper in numpy.

    In y = x - MU the steps are linear: churn y_hat = y + sqrt(sigma_hat^2 - sigma^2) s_noise z (sigma_hat snapped
    to the nearest schedule level in log sigma, as difflab documents), d(y; s) = s (COV + s^2 I)^{-1} y, Euler
    y' = y_hat + h d(y_hat; sigma_hat), Heun y' = y_hat + h/2 (d(y_hat; sigma_hat) + d(y_hat + h d; sigma')).
    Returns the output mean and covariance starting from the exact marginal N(MU, COV + sigma_0^2 I).
    """
    eye = np.eye(2)
    K = lambda s: s * np.linalg.inv(COV + s * s * eye)  # noqa: E731
    n = len(sigmas) - 1
    gamma = min(s_churn / n, math.sqrt(2) - 1)
    mean, cov = np.zeros(2), COV + sigmas[0] ** 2 * eye
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        s_hat = s
        if gamma > 0 and s_tmin <= s <= s_tmax:
            s_hat = SIGMA[np.abs(np.log(SIGMA) - np.log(s * (1 + gamma))).argmin()]
            cov = cov + (s_hat**2 - s**2) * s_noise**2 * eye
        h = s_next - s_hat
        G = eye + h * K(s_hat)
        if second_order and s_next > 0:
            G = eye + 0.5 * h * (K(s_hat) + K(s_next) @ (eye + h * K(s_hat)))
        mean, cov = G @ mean, G @ cov @ G.T
    return MU + mean, cov


@pytest.mark.parametrize(("name", "kwargs", "steps"), [
    ("euler", {}, 30),
    ("heun", {"karras_sigmas": True}, 12),
    ("euler", {"s_churn": 20.0}, 30),
    ("heun", {"s_churn": 40.0}, 20),
    ("heun", {"s_churn": 80.0, "karras_sigmas": True, "s_tmin": 0.05, "s_tmax": 20.0, "s_noise": 1.007}, 20),
])
def test_euler_heun_match_the_papers_recursion(schedule, name, kwargs, steps):
    """Output moments = the independent numpy recursion (to 1e-10 for the deterministic map), and 20000 samples
    agree with them; with churn the recursion also shows the moments approach COV as steps grow."""
    sampler = make_sampler(name, schedule=schedule, steps=steps, **kwargs)
    churn = {k: v for k, v in kwargs.items() if k.startswith("s_")}
    mean, cov = karras_moments(sampler.sigmas, name == "heun", **churn)
    if not churn:
        m2, c2 = affine_moments(sampler, int(sampler.timesteps[0]))
        np.testing.assert_allclose(m2, mean, atol=1e-10)
        np.testing.assert_allclose(c2, cov, atol=1e-10)
    x = sampler.sample(gaussian_model(), marginal_sample(int(sampler.timesteps[0]), 20_000, seed=steps),
                       generator=torch.Generator().manual_seed(steps)).numpy()
    _check_sample_moments(x, mean, cov)
    if churn:
        _, cov_more = karras_moments(
            make_sampler(name, schedule=schedule, steps=4 * steps, **kwargs).sigmas, name == "heun", **churn
        )
        assert np.abs(cov_more - COV).max() < np.abs(cov - COV).max()


# ------------------------------------------------------------------------------------------------ churn mechanics


def test_churn_step_in_closed_form(schedule):
    """One Euler step with churn, for a model predicting eps = 0 (so D(x) = x and the step returns x_hat): the
    output is x_T / sqrt(abar_t0) + sqrt(sigma_hat^2 - sigma^2) s_noise z, sigma_hat = the schedule level nearest
    (in log) to sigma (1 + gamma), gamma = min(s_churn / N, sqrt(2) - 1), z from the generator."""
    for t0, s_churn, s_noise, churns in (
        (500, 0.3, 1.0, True),
        (200, 10.0, 0.8, True),
        (0, 10.0, 1.0, True),
        (0, 0.1, 1.0, False),
    ):
        sampler = make_sampler("euler", schedule=schedule, steps=1, s_churn=s_churn, s_noise=s_noise)
        sampler.timesteps = np.array([t0])  # a one-step run from t0 (the API only chooses t0 = 0 for one step)
        x_T = marginal_sample(t0, 6, 0)
        out = sampler.sample(lambda x, t: torch.zeros_like(x), x_T, generator=torch.Generator().manual_seed(9)).numpy()
        gamma = min(s_churn, math.sqrt(2) - 1)
        t_hat = np.abs(np.log(SIGMA) - np.log(SIGMA[t0] * (1 + gamma))).argmin()
        z = torch.randn(6, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64).numpy()
        expected = x_T.numpy() / math.sqrt(ABAR[t0]) + math.sqrt(SIGMA[t_hat] ** 2 - SIGMA[t0] ** 2) * s_noise * (
            z if t_hat != t0 else 0
        )
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
        # at t = 0 with gamma = 0.1 the level nearest 1.1 sigma_0 is sigma_0 itself (sigma_1 = 1.48 sigma_0): no churn
        assert (t_hat != t0) == churns


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_churn_gating_and_determinism(schedule, name):
    x_T = marginal_sample(999, 100, 0)
    plain = make_sampler(name, schedule=schedule, steps=15).sample(gaussian_model(), x_T)
    # s_churn = 0: the generator is not used
    again = make_sampler(name, schedule=schedule, steps=15).sample(
        gaussian_model(), x_T, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(plain, again)
    # churn only for s_tmin <= sigma <= s_tmax: a window holding no level changes nothing
    gated = make_sampler(name, schedule=schedule, steps=15, s_churn=50.0, s_tmin=1e3, s_tmax=1e4)
    assert torch.equal(gated.sample(gaussian_model(), x_T, generator=torch.Generator().manual_seed(1)), plain)
    churned = make_sampler(name, schedule=schedule, steps=15, s_churn=50.0)
    a = churned.sample(gaussian_model(), x_T, generator=torch.Generator().manual_seed(1))
    b = churned.sample(gaussian_model(), x_T, generator=torch.Generator().manual_seed(1))
    c = churned.sample(gaussian_model(), x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and (a - plain).abs().max() > 0.05 and (a - c).abs().max() > 0.05


def _x_T_for_seed(s: int) -> np.ndarray:
    return torch.randn(2, generator=torch.Generator().manual_seed(1000 + s), dtype=torch.float64).numpy()[None]


@pytest.mark.parametrize(("name", "kwargs"), [
    ("euler", {"steps": 20, "s_churn": 30.0}),
    ("heun", {"steps": 20, "s_churn": 30.0, "karras_sigmas": True}),
    ("ddpm", {"steps": 20, "variance_type": "learned_range"}),
])
def test_per_sample_generators_are_batch_invariant(schedule, name, kwargs):
    learned = kwargs.get("variance_type") == "learned_range"
    model = gaussian_model()
    fn = (lambda x, t: torch.cat([model(x, t), torch.tanh(x)], dim=1)) if learned else model

    def run(seeds):
        sampler = make_sampler(name, schedule=schedule, **kwargs)
        x_T = torch.from_numpy(np.concatenate([_x_T_for_seed(s) for s in seeds]))
        return sampler.sample(fn, x_T, generator=[torch.Generator().manual_seed(s) for s in seeds]).numpy()

    seeds = list(range(24))
    full = run(seeds)
    np.testing.assert_allclose(run([0]), full[:1], rtol=0, atol=1e-12)
    shuffled = [12, 3, 20, 7]
    np.testing.assert_allclose(run(shuffled), full[shuffled], rtol=0, atol=1e-12)
    pair = make_sampler(name, schedule=schedule, **kwargs).sample(
        fn, torch.from_numpy(np.repeat(_x_T_for_seed(0), 2, axis=0)),
        generator=[torch.Generator().manual_seed(0), torch.Generator().manual_seed(99)]).numpy()
    np.testing.assert_allclose(pair[0], full[0], rtol=0, atol=1e-12)
    assert np.abs(pair[0] - pair[1]).min() > 1e-3


# ------------------------------------------------------------------------------------------------ 2C-channel outputs


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("ddpm", {"steps": 20}),
        ("ddpm", {"steps": 20, "variance_type": "fixed_large"}),
        ("ddim", {"steps": 20, "eta": 0.5}),
        ("dpmpp_2m", {"steps": 20}),
        ("euler", {"steps": 20, "s_churn": 10.0}),
        ("heun", {"steps": 10}),
    ],
)
def test_extra_output_channels_are_ignored(schedule, name, kwargs):
    """A model with 2C outputs (prediction, then learned-variance values) gives the same samples as its first C."""
    model = gaussian_model()
    with_var = lambda x, t: torch.cat([model(x, t), 5.0 * torch.sin(3 * x) + 7.0], dim=1)  # noqa: E731
    sampler = make_sampler(name, schedule=schedule, **kwargs)
    x_T = marginal_sample(int(sampler.timesteps[0]), 64, 5)
    a = sampler.sample(model, x_T, generator=torch.Generator().manual_seed(6))
    b = sampler.sample(with_var, x_T, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    # image-shaped data too: channels on dim 1
    x_img = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    img_model = lambda x, t: 0.1 * x  # noqa: E731
    a = sampler.sample(img_model, x_img, generator=torch.Generator().manual_seed(6))
    b = sampler.sample(
        lambda x, t: torch.cat([img_model(x, t), torch.ones_like(x)], dim=1),
        x_img,
        generator=torch.Generator().manual_seed(6),
    )
    assert torch.equal(a, b)


def test_bad_output_shapes_raise(schedule):
    for name in SAMPLERS:
        sampler = make_sampler(name, schedule=schedule, steps=3)
        with pytest.raises(ValueError, match=r"model output has shape \(4, 5\) for x_t of shape \(4, 3\)"):
            sampler.sample(lambda x, t: torch.zeros(4, 5), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="model output has shape"):
        split_output(torch.zeros(4, 9), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="model output has shape"):
        split_output(torch.zeros(4, 2, 4, 5), torch.zeros(4, 1, 4, 4))
    out, extra = split_output(torch.arange(24.0).view(2, 4, 3), torch.zeros(2, 2, 3))
    assert torch.equal(out, torch.arange(24.0).view(2, 4, 3)[:, :2]) and torch.equal(
        extra, torch.arange(24.0).view(2, 4, 3)[:, 2:]
    )


# ------------------------------------------------------------------------------------------------ DDPM learned_range


def test_learned_range_needs_2c_channels(schedule):
    sampler = make_sampler("ddpm", schedule=schedule, steps=5, variance_type="learned_range")
    with pytest.raises(ValueError, match=r"variance_type='learned_range' needs a model output with 2C channels"):
        sampler.sample(gaussian_model(), torch.zeros(4, 2))


@pytest.mark.parametrize("steps", [10, 100])
def test_learned_range_endpoints_are_the_fixed_variances(schedule, steps):
    """v = +1 gives log beta (fixed_large), v = -1 log beta~ (fixed_small; clipping only touches the last step,
    where no noise is drawn)."""
    model = gaussian_model()
    x_T = marginal_sample(int(make_sampler("ddpm", schedule=schedule, steps=steps).timesteps[0]), 200, 7)
    for v, fixed in ((1.0, "fixed_large"), (-1.0, "fixed_small")):
        learned = make_sampler("ddpm", schedule=schedule, steps=steps, variance_type="learned_range").sample(
            lambda x, t, v=v: torch.cat([model(x, t), torch.full_like(x, v)], dim=1),
            x_T,
            generator=torch.Generator().manual_seed(1),
        )
        ref = make_sampler("ddpm", schedule=schedule, steps=steps, variance_type=fixed).sample(
            model, x_T, generator=torch.Generator().manual_seed(1)
        )
        np.testing.assert_allclose(learned.numpy(), ref.numpy(), rtol=0, atol=1e-12)


def test_learned_range_log_variance_bounds(schedule):
    """The bounds are those of the respaced chain, beta~ clipped at its last (t = 0) step to the value before."""
    sampler = make_sampler("ddpm", schedule=schedule, steps=4, variance_type="learned_range")  # 750, 500, 250, 0
    ab = np.append(ABAR[[750, 500, 250, 0]], 1.0)
    beta = 1 - ab[:-1] / ab[1:]
    post = (1 - ab[1:]) / (1 - ab[:-1]) * beta
    min_log, max_log = sampler.log_variance_bounds()
    np.testing.assert_allclose(max_log.numpy(), np.log(beta), rtol=1e-12)
    np.testing.assert_allclose(min_log.numpy(), np.log([post[0], post[1], post[2], post[2]]), rtol=1e-12)


def test_learned_range_with_the_true_reverse_variance_is_exact(schedule):
    """Improved DDPM's point (Nichol & Dhariwal 2021, Sec. 3.1): with few steps the right reverse variance matters.

    For Gaussian data (diagonal, S <= 1) the true reverse transition of the respaced chain t -> t' is Gaussian with
    mean mu~(E[x0 | x_t], x_t) and variance beta~' + c^2 Var[x0 | x_t], c = sqrt(abar') beta' / (1 - abar'), which
    lies in [beta~', beta']. A model that outputs the exact eps and the v putting the learned_range variance there
    makes the 10-step sampler exact up to the last, noiseless step (which returns E[x0 | x_0]). The moments are
    propagated independently in numpy; fixed_small / fixed_large miss the variance of the narrow coordinate by >10%.
    """
    mu, S = np.array([0.3, -0.1, 0.2]), np.array([0.25, 0.5, 0.9])
    steps = 10
    sampler = make_sampler("ddpm", schedule=schedule, steps=steps, variance_type="learned_range")
    ts = sampler.timesteps
    ab_of = dict(zip(ts.tolist(), ABAR[ts]))
    prev_of = dict(zip(ts.tolist(), np.append(ABAR[ts[1:]], 1.0)))
    post_clip = {}
    for t in ts:
        ab, abp = ab_of[t], prev_of[t]
        post_clip[t] = (1 - abp) / (1 - ab) * (1 - ab / abp)
    post_clip[ts[-1]] = post_clip[ts[-2]]
    eps_model = gaussian_model(mu=mu, cov=np.diag(S**2))

    def true_var(t):
        ab, abp = ab_of[t], prev_of[t]
        beta = 1 - ab / abp
        c = math.sqrt(abp) * beta / (1 - ab)
        return (1 - abp) / (1 - ab) * beta + c * c * S**2 * (1 - ab) / (ab * S**2 + 1 - ab), beta

    def model(x, t):
        tt = int(t[0])
        if tt == ts[-1]:
            v = np.zeros(3)
        else:
            var, beta = true_var(tt)
            frac = (np.log(var) - np.log(post_clip[tt])) / (np.log(beta) - np.log(post_clip[tt]))
            v = 2 * frac - 1
        return torch.cat([eps_model(x, t), torch.from_numpy(v).expand_as(x)], dim=1)

    def chain(var_of):
        m = math.sqrt(ABAR[ts[0]]) * mu
        var = ABAR[ts[0]] * S**2 + 1 - ABAR[ts[0]]
        for t in ts:
            ab, abp = ab_of[t], prev_of[t]
            beta = 1 - ab / abp
            D = ab * S**2 + 1 - ab
            k = math.sqrt(1 - ab) / D  # eps_hat = k (x - sqrt(ab) mu)
            cfac = beta / math.sqrt(1 - ab)
            A = (1 - cfac * k) / math.sqrt(1 - beta)
            b = cfac * k * math.sqrt(ab) * mu / math.sqrt(1 - beta)
            m, var = A * m + b, A * A * var + (0.0 if abp == 1.0 else var_of(t, beta))
        return m, var

    m_learned, v_learned = chain(lambda t, beta: true_var(t)[0])
    _, v_small = chain(lambda t, beta: (1 - prev_of[t]) / (1 - ab_of[t]) * beta)
    _, v_large = chain(lambda t, beta: beta)
    final_loss = S**2 * (1 - ABAR[0]) / (ABAR[0] * S**2 + 1 - ABAR[0])  # Var[x0 | x_0], dropped by the last step
    np.testing.assert_allclose(v_learned, S**2 - final_loss, rtol=1e-9)
    np.testing.assert_allclose(m_learned, mu, atol=1e-12)
    assert v_small[0] < 0.9 * S[0] ** 2 and v_large[0] > 1.1 * S[0] ** 2

    n = 20_000
    x_T = marginal_sample(int(ts[0]), n, 12, mu=mu, cov=np.diag(S**2))
    x = sampler.sample(model, x_T, generator=torch.Generator().manual_seed(13)).numpy()
    se_v = v_learned * math.sqrt(2 / (n - 1))
    assert np.all(np.abs(x.var(0, ddof=1) - v_learned) < Z * se_v), (x.var(0, ddof=1) - v_learned) / se_v
    assert np.all(np.abs(x.mean(0) - mu) < Z * np.sqrt(v_learned / n))
    small = (
        make_sampler("ddpm", schedule=schedule, steps=steps)
        .sample(eps_model, x_T, generator=torch.Generator().manual_seed(13))
        .numpy()
    )
    assert small.var(0, ddof=1)[0] < S[0] ** 2 - Z * S[0] ** 2 * math.sqrt(2 / n)


# ------------------------------------------------------------------------------------------------ option errors


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("euler", {"rho": 0.0}, r"sampler\.rho=0\.0"),
        ("heun", {"s_churn": -1.0}, r"sampler\.s_churn=-1\.0"),
        ("heun", {"s_noise": -0.5}, r"sampler\.s_noise=-0\.5"),
        ("euler", {"s_tmin": 5.0, "s_tmax": 1.0}, r"sampler\.s_tmin=5\.0 must be <= sampler\.s_tmax=1\.0"),
        (
            "dpmpp_2m",
            {"final_sigmas_type": "one"},
            r"final_sigmas_type='one' is not known; choose one of \['zero', 'sigma_min'\]",
        ),
        (
            "dpmpp_2m",
            {"final_sigmas_type": "sigma_min", "timestep_spacing": "leading"},
            r"final_sigmas_type='sigma_min'.*timestep_spacing='trailing'",
        ),
        (
            "ddpm",
            {"variance_type": "learned"},
            r"variance_type='learned' is not known; choose one of \['fixed_small', 'fixed_large', 'learned_range'\]",
        ),
        ("heun", {"eta": 0.5}, r"sampler option 'eta' is not known for sampler\.name='heun'"),
        ("heun", {"steps": 0, "karras_sigmas": True}, r"sampler\.steps=0"),
        (
            "nope",
            {},
            r"sampler\.name='nope' is not known; choose one of \['ddim', 'ddpm', 'dpmpp_2m', 'dpmpp_2m_sde', "
            r"'dpmpp_3m', 'dpmpp_3m_sde', 'euler', 'heun', 'unipc'\]",
        ),
    ],
)
def test_bad_options_raise(schedule, name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_sampler(name, schedule=schedule, **{"steps": 10, **kwargs})
