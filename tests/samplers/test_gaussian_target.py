"""Samplers on a Gaussian data distribution, where the optimal model and the right answers are known in closed form.

Data: x0 ~ N(MU, diag(S^2)) in 3 dimensions. Per coordinate, with a = sqrt(abar_t), x_t = a x0 + sqrt(1 - a^2) eps is
Gaussian with mean a MU and variance D_t = abar_t S^2 + 1 - abar_t, and (eps, x_t) are jointly Gaussian with
Cov(eps, x_t) = sqrt(1 - abar_t). Hence the optimal (MMSE) predictors are the linear regressions

    E[eps | x_t] = sqrt(1 - abar_t) (x_t - a MU) / D_t
    E[x0  | x_t] = MU + a S^2 (x_t - a MU) / D_t
    E[v   | x_t] = a E[eps | x_t] - sqrt(1 - abar_t) E[x0 | x_t]

and they are what a perfectly trained network outputs. With a linear model every sampler here is a linear-Gaussian
recursion, so the exact distribution of its output is Gaussian with moments that ``_chain_moments`` propagates
in numpy from the published update rules (Ho et al. 2020 Alg. 2; Song et al. 2021 eq. 12/16). The samples must
match those moments to within sampling error, and those moments must approach N(MU, S^2) as steps grow.

Everything below uses the DDPM linear schedule recomputed here (not read from the code under test) and starts
x_T from the exact marginal at the sampler's first timestep, so the only error left is the sampler's own.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from difflab.diffusion import make_schedule
from difflab.samplers import make_sampler

MU = np.array([0.5, -0.3, 0.1])
S = np.array([0.25, 0.8, 1.5])
T = 1000
ABAR = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
N_SAMPLES = 20_000
Z = 4.5  # standard errors allowed for a statistical check (all seeds are fixed, so results are reproducible)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("linear", num_timesteps=T)


def optimal_model(prediction_type: str = "eps"):
    """The exact E[target | x_t] for the Gaussian data, in x_t's dtype; also counts its calls."""
    ab_table = torch.from_numpy(ABAR)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        model_fn.calls += 1
        ab = ab_table[t].view(-1, 1)
        mu, var = torch.from_numpy(MU), torch.from_numpy(S**2)
        a, s = ab.sqrt(), (1.0 - ab).sqrt()
        D = ab * var + 1.0 - ab
        centred = x.double() - a * mu
        eps = s * centred / D
        x0 = mu + a * var * centred / D
        out = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction_type]
        return out.to(x.dtype)

    model_fn.calls = 0
    return model_fn


def marginal_sample(t: int, n: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """n draws of x_t ~ N(sqrt(abar_t) MU, abar_t S^2 + 1 - abar_t)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, MU.size, generator=g, dtype=torch.float64).numpy()
    ab = ABAR[t]
    return torch.from_numpy(math.sqrt(ab) * MU + np.sqrt(ab * S**2 + 1 - ab) * z).to(dtype)


def _chain_moments(timesteps, kind: str, variance_type: str = "fixed_small", eta: float = 0.0):
    """Exact output mean and variance of the sampler with the optimal model, started from the exact marginal.

    Written from the papers, independently of difflab: each step is x' = A x + b + sigma z with
    eps_hat = k (x - sqrt(abar) MU), k = sqrt(1 - abar)/D.
    DDPM (Ho et al. Alg. 2 on the respaced chain, beta = 1 - abar/abar_prev):
        x' = (x - beta/sqrt(1 - abar) eps_hat)/sqrt(1 - beta) + sigma z, sigma^2 = beta~ or beta, none at the end.
    DDIM (Song et al. eq. 12): x' = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z,
        sigma^2 = eta^2 (1 - abar_prev)/(1 - abar) (1 - abar/abar_prev).
    """
    abars = np.append(ABAR[np.asarray(timesteps)], 1.0)
    mean = math.sqrt(abars[0]) * MU
    var = abars[0] * S**2 + 1.0 - abars[0]
    for ab, ab_prev in zip(abars[:-1], abars[1:]):
        D = ab * S**2 + 1.0 - ab
        k = math.sqrt(1.0 - ab) / D
        e0 = -k * math.sqrt(ab) * MU  # eps_hat = k x + e0
        if kind == "ddpm":
            beta = 1.0 - ab / ab_prev
            c = beta / math.sqrt(1.0 - ab)
            A, b = (1.0 - c * k) / math.sqrt(1.0 - beta), -c * e0 / math.sqrt(1.0 - beta)
            if ab_prev == 1.0:
                sig2 = 0.0
            else:
                sig2 = beta if variance_type == "fixed_large" else (1.0 - ab_prev) / (1.0 - ab) * beta
        else:
            sig2 = eta**2 * (1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)
            A0, b0 = (1.0 - math.sqrt(1.0 - ab) * k) / math.sqrt(ab), -math.sqrt(1.0 - ab) * e0 / math.sqrt(ab)
            c = math.sqrt(max(1.0 - ab_prev - sig2, 0.0))
            A, b = math.sqrt(ab_prev) * A0 + c * k, math.sqrt(ab_prev) * b0 + c * e0
        mean = A * mean + b
        var = A * A * var + sig2
    return mean, var


def _run(schedule, name: str, seed: int, n: int = N_SAMPLES, dtype=torch.float32, prediction_type="eps", **kwargs):
    sampler = make_sampler(name, schedule=schedule, **kwargs)
    x_T = marginal_sample(int(sampler.timesteps[0]), n, seed, dtype)
    g = torch.Generator().manual_seed(seed + 1)
    out = sampler.sample(optimal_model(prediction_type), x_T, prediction_type=prediction_type, generator=g)
    assert out.shape == x_T.shape and out.dtype == dtype
    return sampler, out.double().numpy()


def _check_moments(x: np.ndarray, mean_pred: np.ndarray, var_pred: np.ndarray) -> None:
    n = x.shape[0]
    m, v = x.mean(0), x.var(0, ddof=1)
    se_m, se_v = np.sqrt(var_pred / n), var_pred * math.sqrt(2.0 / (n - 1))
    assert np.all(np.abs(m - mean_pred) < Z * se_m), ((m - mean_pred) / se_m)
    assert np.all(np.abs(v - var_pred) < Z * se_v), ((v - var_pred) / se_v)


# ------------------------------------------------------------------------------------------------ DDPM


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_full_chain_matches_target(schedule, variance_type):
    sampler, x = _run(schedule, "ddpm", seed=10, variance_type=variance_type)
    assert sampler.nfe == 1000
    mean_pred, var_pred = _chain_moments(sampler.timesteps, "ddpm", variance_type)
    # The mean is exact at every step (E[x0_hat] = MU); the variance of the 1000-step chain is within 3.5%.
    np.testing.assert_allclose(mean_pred, MU, atol=1e-12)
    assert np.all(np.abs(var_pred / S**2 - 1.0) < 0.035), var_pred / S**2 - 1.0
    _check_moments(x, MU, var_pred)
    # and hence directly against the target, allowing for the <= 3.5% discretisation bias:
    v = x.var(0, ddof=1)
    assert np.all(np.abs(v - S**2) < Z * S**2 * math.sqrt(2 / N_SAMPLES) + 0.035 * S**2)


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_respaced_100_steps_matches_exact_chain(schedule, variance_type):
    sampler, x = _run(schedule, "ddpm", seed=20, steps=100, variance_type=variance_type)
    assert sampler.nfe == 100
    np.testing.assert_array_equal(sampler.timesteps, np.arange(990, -1, -10))
    mean_pred, var_pred = _chain_moments(sampler.timesteps, "ddpm", variance_type)
    _check_moments(x, mean_pred, var_pred)
    np.testing.assert_allclose(mean_pred, MU, atol=1e-12)


def test_ddpm_variance_types_bracket_the_target(schedule):
    """Ho et al. 2020: sigma^2 = beta~ is optimal for a point mass x0 and sigma^2 = beta for x0 ~ N(0, I).

    The true reverse variance is beta~ + abar_prev beta^2 S^2 / ((1 - abar) D), so fixed_small always adds too little
    noise and fixed_large too much when S < 1 (too little when S > 1). With 100 respaced steps the effect on the
    narrow coordinate (S = 0.25) is ~ -20% / +9% and far outside sampling error.
    """
    n = 50_000
    _, small = _run(schedule, "ddpm", seed=30, n=n, steps=100, variance_type="fixed_small")
    _, large = _run(schedule, "ddpm", seed=30, n=n, steps=100, variance_type="fixed_large")
    v_small, v_large = small.var(0, ddof=1), large.var(0, ddof=1)
    se = S**2 * math.sqrt(2 / (n - 1))
    assert np.all(v_small < S**2 - Z * se)
    assert v_large[0] > S[0] ** 2 + Z * se[0]
    assert np.all(v_small < v_large)
    _, var_small = _chain_moments(np.arange(990, -1, -10), "ddpm", "fixed_small")
    _, var_large = _chain_moments(np.arange(990, -1, -10), "ddpm", "fixed_large")
    assert np.all(var_small < S**2)
    assert np.all((var_large > S**2) == (S < 1))


# ------------------------------------------------------------------------------------------------ DDIM


@pytest.mark.parametrize(("steps", "eta"), [(50, 0.0), (200, 0.0), (50, 1.0), (200, 1.0)])
def test_ddim_matches_exact_chain(schedule, steps, eta):
    sampler, x = _run(schedule, "ddim", seed=40 + steps, steps=steps, eta=eta)
    assert sampler.nfe == steps
    mean_pred, var_pred = _chain_moments(sampler.timesteps, "ddim", eta=eta)
    np.testing.assert_allclose(mean_pred, MU, atol=1e-12)
    _check_moments(x, mean_pred, var_pred)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_variance_bias_shrinks_at_first_order(schedule, eta):
    """The output variance approaches S^2 from below; quadrupling the steps cuts the bias by ~4 (first order)."""
    _, v50 = _chain_moments(make_sampler("ddim", schedule=schedule, steps=50).timesteps, "ddim", eta=eta)
    _, v200 = _chain_moments(make_sampler("ddim", schedule=schedule, steps=200).timesteps, "ddim", eta=eta)
    b50, b200 = 1 - v50 / S**2, 1 - v200 / S**2
    assert np.all(b50 > 0) and np.all(b200 > 0)
    assert np.all((b50 / b200 > 2.5) & (b50 / b200 < 5.0)), b50 / b200
    # Sample level, against the target itself: at 200 steps the exact-chain variance bias is 5.1/2.0/1.6 % (eta=0)
    # and 11.9/4.8/3.4 % (eta=1) for S = 0.25/0.8/1.5, so allow sampling error plus 5.5 % / 12.5 %.
    _, x = _run(schedule, "ddim", seed=41, steps=200, eta=eta)
    v = x.var(0, ddof=1)
    assert np.all(np.abs(v - S**2) < Z * S**2 * math.sqrt(2 / N_SAMPLES) + (0.055 if eta == 0 else 0.125) * S**2)
    assert np.all(np.abs(x.mean(0) - MU) < Z * S / math.sqrt(N_SAMPLES))


def test_ddim_eta0_map_closed_form(schedule):
    """The deterministic DDIM map for this target, in closed form.

    Write u_t = (sqrt(abar_t) S, sqrt(1 - abar_t)) = r_t (cos th_t, sin th_t), so r_t^2 = D_t, and standardise
    z_t = (x_t - sqrt(abar_t) MU) / r_t. One DDIM step with the optimal eps gives
    x' - sqrt(abar') MU = (x - sqrt(abar) MU) (u_t . u_t') / D_t, i.e. z' = cos(th_t - th_t') z. So the sampler returns
    MU + S z_T prod_i cos(dth_i), whereas the probability-flow ODE returns MU + S z_T exactly.
    """
    sampler = make_sampler("ddim", schedule=schedule, steps=25, eta=0.0, timestep_spacing="trailing")
    t0 = int(sampler.timesteps[0])
    x_T = marginal_sample(t0, 512, seed=5, dtype=torch.float64)
    out = sampler.sample(optimal_model(), x_T).numpy()
    abars = np.append(ABAR[sampler.timesteps], 1.0)
    theta = np.arctan2(np.sqrt(1 - abars)[:, None], np.sqrt(abars)[:, None] * S)
    factor = np.prod(np.cos(np.diff(theta, axis=0)), axis=0)
    z_T = (x_T.numpy() - math.sqrt(ABAR[t0]) * MU) / np.sqrt(ABAR[t0] * S**2 + 1 - ABAR[t0])
    np.testing.assert_allclose(out, MU + factor * S * z_T, rtol=0, atol=1e-12)
    assert np.all(factor < 1)


def _pf_ode_errors(schedule, spacing: str, steps_list=(10, 20, 40, 80)) -> np.ndarray:
    """RMS distance between DDIM(eta=0) and the exact probability-flow ODE solution from the same x_T.

    The PF-ODE transports each marginal N(sqrt(abar) MU, D_t) to the next by an affine map, so it preserves the
    standardised quantile: x_0 = MU + S (x_T - sqrt(abar_T) MU) / sqrt(abar_T S^2 + 1 - abar_T).
    """
    errors = []
    for steps in steps_list:
        sampler = make_sampler("ddim", schedule=schedule, steps=steps, eta=0.0, timestep_spacing=spacing)
        t0 = int(sampler.timesteps[0])
        x_T = marginal_sample(t0, 4096, seed=1, dtype=torch.float64)
        out = sampler.sample(optimal_model(), x_T).numpy()
        exact = MU + S * (x_T.numpy() - math.sqrt(ABAR[t0]) * MU) / np.sqrt(ABAR[t0] * S**2 + 1 - ABAR[t0])
        errors.append(math.sqrt(((out - exact) ** 2).mean()))
    return np.array(errors)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddim_converges_to_pf_ode_at_first_order(schedule, spacing):
    """Error vs the exact PF-ODE map: 1 - prod cos(dth_i) ~ sum dth_i^2 / 2 = O(1/steps), i.e. first order.

    Measured (linear schedule, this target): RMS errors ~0.165, 0.086, 0.044, 0.022 at 10/20/40/80 steps;
    per-doubling orders 0.93-1.04 for all three spacings.
    """
    errors = _pf_ode_errors(schedule, spacing)
    assert np.all(np.diff(errors) < 0), errors
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all((orders > 0.8) & (orders < 1.2)), orders
    slope = -np.polyfit(np.log([10, 20, 40, 80]), np.log(errors), 1)[0]
    assert 0.9 < slope < 1.1, slope
    assert 0.1 < errors[0] < 0.25 and errors[-1] < 0.03, errors


# ------------------------------------------------------------------------------------------------ parameterizations


@pytest.mark.parametrize("prediction_type", ["x0", "v"])
def test_prediction_types_give_the_same_ddim_output(schedule, prediction_type):
    sampler = make_sampler("ddim", schedule=schedule, steps=50, eta=0.0)
    # measured max differences: ~8e-15 (float64), ~3.3e-6 (float32)
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        x_T = marginal_sample(int(sampler.timesteps[0]), 2000, seed=3, dtype=dtype)
        ref = sampler.sample(optimal_model("eps"), x_T, prediction_type="eps")
        out = sampler.sample(optimal_model(prediction_type), x_T, prediction_type=prediction_type)
        np.testing.assert_allclose(out.double().numpy(), ref.double().numpy(), rtol=0, atol=atol)


@pytest.mark.parametrize(
    ("name", "kwargs"), [("ddim", {"steps": 20, "eta": 1.0}), ("ddpm", {"steps": 20, "variance_type": "fixed_large"})]
)
@pytest.mark.parametrize("prediction_type", ["x0", "v"])
def test_prediction_types_agree_for_stochastic_samplers(schedule, name, kwargs, prediction_type):
    sampler = make_sampler(name, schedule=schedule, **kwargs)
    x_T = marginal_sample(int(sampler.timesteps[0]), 500, seed=4, dtype=torch.float64)
    ref = sampler.sample(optimal_model("eps"), x_T, "eps", torch.Generator().manual_seed(9))
    out = sampler.sample(optimal_model(prediction_type), x_T, prediction_type, torch.Generator().manual_seed(9))
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=1e-12)


def test_ddim_eta1_is_ddpm_fixed_small(schedule):
    """Song et al. 2021: with eta = 1 the DDIM step is DDPM's posterior step (mean mu~, variance beta~) on the
    respaced chain; given the same noise the two samplers produce the same trajectory."""
    ddim = make_sampler("ddim", schedule=schedule, steps=40, eta=1.0)
    ddpm = make_sampler("ddpm", schedule=schedule, steps=40, variance_type="fixed_small")
    x_T = marginal_sample(int(ddim.timesteps[0]), 1000, seed=6, dtype=torch.float64)
    a = ddim.sample(optimal_model(), x_T, generator=torch.Generator().manual_seed(2)).numpy()
    b = ddpm.sample(optimal_model(), x_T, generator=torch.Generator().manual_seed(2)).numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    c = ddpm.sample(optimal_model(), x_T, generator=torch.Generator().manual_seed(3)).numpy()
    assert np.abs(a - c).max() > 0.1  # the noise matters, so the agreement above is not vacuous


# ------------------------------------------------------------------------------------------------ nfe and generators


@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("ddpm", {}, 1000),
    ("ddpm", {"steps": 100}, 100),
    ("ddim", {"steps": 50}, 50),
    ("ddim", {"steps": 7, "eta": 0.5, "timestep_spacing": "trailing"}, 7),
])
def test_nfe_equals_steps(schedule, name, kwargs, expected):
    sampler = make_sampler(name, schedule=schedule, **kwargs)
    assert sampler.nfe == 0
    for _ in range(2):  # nfe counts one call, not the sampler's lifetime
        model = optimal_model()
        sampler.sample(model, torch.randn(4, 3))
        assert sampler.nfe == expected == model.calls


def _x_T_for_seed(s: int) -> np.ndarray:
    return torch.randn(3, generator=torch.Generator().manual_seed(1000 + s), dtype=torch.float64).numpy()[None]


def _per_sample_run(schedule, name, kwargs, seeds):
    """Sample i has its own x_T and its own noise generator, both determined by seeds[i] alone."""
    sampler = make_sampler(name, schedule=schedule, **kwargs)
    x_T = torch.from_numpy(np.concatenate([_x_T_for_seed(s) for s in seeds]))
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return sampler.sample(optimal_model(), x_T, generator=gens).numpy()


@pytest.mark.parametrize(
    ("name", "kwargs"), [("ddpm", {"steps": 100}), ("ddpm", {}), ("ddim", {"steps": 50, "eta": 1.0})]
)
def test_per_sample_generators_are_batch_invariant(schedule, name, kwargs):
    seeds = list(range(64))
    full = _per_sample_run(schedule, name, kwargs, seeds)
    one = _per_sample_run(schedule, name, kwargs, [0])
    seven = _per_sample_run(schedule, name, kwargs, seeds[:7])
    shuffled = [12, 40, 3, 63, 7, 25, 50]
    seven_other = _per_sample_run(schedule, name, kwargs, shuffled)
    np.testing.assert_allclose(one, full[:1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(seven, full[:7], rtol=0, atol=1e-12)
    np.testing.assert_allclose(seven_other, full[shuffled], rtol=0, atol=1e-12)
    # Different seeds give different samples, and the sampler's noise (not just x_T) depends on the seed.
    assert np.abs(full[0] - full[1]).min() > 1e-3
    sampler = make_sampler(name, schedule=schedule, **kwargs)
    x_T = torch.from_numpy(np.repeat(_x_T_for_seed(0), 2, axis=0))
    pair = sampler.sample(
        optimal_model(), x_T, generator=[torch.Generator().manual_seed(0), torch.Generator().manual_seed(99)]
    ).numpy()
    np.testing.assert_allclose(pair[0], full[0], rtol=0, atol=1e-12)
    assert np.abs(pair[0] - pair[1]).min() > 1e-3


def test_generator_list_length_must_match_batch(schedule):
    sampler = make_sampler("ddim", schedule=schedule, steps=5, eta=1.0)
    with pytest.raises(ValueError, match="3 generators for a batch of 4"):
        sampler.sample(optimal_model(), torch.zeros(4, 3), generator=[torch.Generator() for _ in range(3)])


def test_single_generator_is_reproducible(schedule):
    sampler = make_sampler("ddpm", schedule=schedule, steps=30)
    x_T = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    a = sampler.sample(optimal_model(), x_T, generator=torch.Generator().manual_seed(5))
    b = sampler.sample(optimal_model(), x_T, generator=torch.Generator().manual_seed(5))
    c = sampler.sample(optimal_model(), x_T, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)
