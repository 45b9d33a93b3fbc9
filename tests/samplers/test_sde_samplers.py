"""The DPM-Solver++ SDE samplers' noise scale ``eta`` and DPM-Solver++(3M) SDE: against the ODE solvers they reduce to,
against diffusers step by step, and on Gaussian data where the exact output law is known.

diffusers' sde-dpmsolver++ with solver_order=3 (0.42) weights the second difference D2 of a third-order step by
alpha_n ((1 - exp(-2h) - 2h) / (2h)^2 - 1/2); its own ODE formula, taken at 2h as the SDE's first- and second-order
terms are, gives alpha_n ((1 - exp(-2h) - 2h) / (2h)^2 + 1/2), which is also k-diffusion's sample_dpmpp_3m_sde.
difflab uses the latter. The tests here show both facts: diffusers' steps equal difflab's wherever the order is at most
two and differ by exactly alpha_n D2 in every third-order step, and on Gaussian data the +1/2 solver's output law
converges faster than the -1/2 one, whose error shrinks only like 1/steps.

Gaussian data (the same 2-D N(MU, COV) and uniform-log-SNR schedule as test_new_multistep_samplers.py): with the
optimal model every step is linear in the state and the injected noise, so the output covariance follows from a
recursion over (y_s, y_{s-1}, y_{s-2}) per eigen-direction (``sde_output_variances``), checked against 20,000 samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from test_diffusers_reference import PRED, make_model, x_T  # noqa: E402
from test_fast_samplers import _check_sample_moments  # noqa: E402
from test_new_multistep_samplers import LAMBDAS, MU, SD, V, optimal_eps, shrink, start  # noqa: E402

from difflab.diffusion.schedules import NoiseSchedule  # noqa: E402
from difflab.samplers import make_sampler, randn_like  # noqa: E402
from difflab.samplers.multistep import multistep_x0  # noqa: E402

T = 1000
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def logsnr_schedule() -> NoiseSchedule:
    """test_new_multistep_samplers.py's schedule uniform in lambda from 4 (t = 0) to -5 (t = T - 1)."""
    ab = torch.from_numpy(1.0 / (1.0 + np.exp(-2.0 * LAMBDAS)))
    return NoiseSchedule("uniform-logsnr", 1.0 - ab / torch.cat([ab.new_ones(1), ab[:-1]]))


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    """difflab's schedule with diffusers' float32 alpha-bars (test_diffusers_reference.py)."""
    ab = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="linear").alphas_cumprod.double()
    return NoiseSchedule("diffusers-linear", 1.0 - ab / torch.cat([ab.new_ones(1), ab[:-1]]))


# ------------------------------------------------------------------------------------------------ eta


@pytest.mark.parametrize("order", ["2m", "3m"])
@pytest.mark.parametrize("options", [{}, {"karras_sigmas": True}, {"timestep_spacing": "logsnr"}])
def test_eta_zero_is_the_ode_solver_step_for_step_and_draws_no_noise(schedule, order, options):
    model = make_model(schedule)
    g = torch.Generator().manual_seed(3)
    before = g.get_state()
    sde = make_sampler(f"dpmpp_{order}_sde", schedule=schedule, steps=12, eta=0.0, **options)
    ode = make_sampler(f"dpmpp_{order}", schedule=schedule, steps=12, **options)
    a, b = sde.sample(model, x_T(), "eps", g), ode.sample(model, x_T(), "eps")
    assert (a - b).abs().max().item() < 1e-12
    assert torch.equal(g.get_state(), before)


def test_eta_scales_the_noise_between_the_ode_and_the_sde(schedule):
    """Samples move away from the ODE's continuously as eta grows, and eta = 1 is the default sampler."""
    model = make_model(schedule)

    def draw(**options) -> torch.Tensor:
        sampler = make_sampler("dpmpp_2m_sde", schedule=schedule, steps=10, **options)
        return sampler.sample(model, x_T(), "eps", torch.Generator().manual_seed(5))

    ode = draw(eta=0.0)
    distance = [(draw(eta=eta) - ode).abs().mean().item() for eta in (0.1, 0.4, 1.0)]
    assert 0 < distance[0] < distance[1] < distance[2]
    assert torch.equal(draw(eta=1.0), draw())


@pytest.mark.parametrize("eta", [-0.5, math.nan, "1"])
def test_a_bad_eta_is_refused_naming_it(schedule, eta):
    with pytest.raises(ValueError, match=r"sampler\.eta=.* must be a number >= 0"):
        make_sampler("dpmpp_3m_sde", schedule=schedule, steps=10, eta=eta)


def test_odes_take_no_eta(schedule):
    with pytest.raises(ValueError, match=r"sampler option 'eta' is not known for sampler\.name='dpmpp_3m'"):
        make_sampler("dpmpp_3m", schedule=schedule, steps=10, eta=1.0)


# ------------------------------------------------------------------------------------------------ against diffusers


def lockstep(schedule: NoiseSchedule, steps: int, prediction_type: str) -> list[tuple[int, float, float]]:
    """Run difflab's dpmpp_3m_sde and feed each of its states into diffusers' DPMSolverMultistepScheduler
    (sde-dpmsolver++, order 3, midpoint, trailing) with the same noise draw: per step, (order, max |diffusers -
    difflab|, max |diffusers - (difflab - alpha_n D2)|), D2 computed here from difflab's x0 predictions."""
    model = make_model(schedule, prediction_type)
    sampler = make_sampler("dpmpp_3m_sde", schedule=schedule, steps=steps)
    xs, x0s = [], []

    def keep(i: int, t: int, x: torch.Tensor, x0: torch.Tensor | None) -> None:  # i = 0: the start noise, no x0
        xs.append(x.double())
        if x0 is not None:
            x0s.append(x0.double())

    sampler.sample(model, x_T(), prediction_type, torch.Generator().manual_seed(11), callback=keep)
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T, beta_schedule="linear", prediction_type=PRED[prediction_type],
        algorithm_type="sde-dpmsolver++", solver_order=3, solver_type="midpoint", timestep_spacing="trailing",
    )
    ref.set_timesteps(steps)
    np.testing.assert_array_equal(ref.timesteps.numpy(), sampler.timesteps)
    ab = schedule.alphas_cumprod[torch.from_numpy(sampler.timesteps)].tolist() + [1.0]
    lam = [0.5 * math.log(a / (1.0 - a)) if a < 1.0 else math.inf for a in ab]
    g = torch.Generator().manual_seed(11)
    rows = []
    for i, t in enumerate(ref.timesteps):
        noise = randn_like(xs[i], g) if ab[i + 1] < 1.0 else torch.zeros_like(xs[i])
        out = ref.step(model(xs[i], t.expand(xs[i].shape[0])), t, xs[i], variance_noise=noise).prev_sample.double()
        order = sampler.step_order(i, 3) if ab[i + 1] < 1.0 else 1
        shifted = xs[i + 1]
        if order == 3:
            h = lam[i + 1] - lam[i]
            r1, r2 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
            d2 = ((x0s[i] - x0s[i - 1]) / r1 - (x0s[i - 1] - x0s[i - 2]) / r2) / (r1 + r2)
            shifted = xs[i + 1] - math.sqrt(ab[i + 1]) * d2
        rows.append((order, (out - xs[i + 1]).abs().max().item(), (out - shifted).abs().max().item()))
    return rows


@pytest.mark.parametrize("steps", [5, 10, 20])
@pytest.mark.parametrize("prediction_type", ["eps", "v"])
def test_diffusers_steps_equal_ours_to_second_order_and_differ_by_alpha_d2_at_third(schedule, steps, prediction_type):
    """Measured: up to 1.1e-6 in the first- and second-order steps; in the third-order ones diffusers differs from
    difflab by 0.019 to 1.15 and from difflab - alpha_n D2 by at most 1.0e-6."""
    rows = lockstep(schedule, steps, prediction_type)
    assert sum(order == 3 for order, _, _ in rows) == (steps - 4 if steps < 15 else steps - 3)
    for i, (order, plain, shifted) in enumerate(rows):
        if order < 3:
            assert plain < 1e-5, (i, order, plain)
        else:
            assert shifted < 1e-5 and plain > 20 * shifted, (i, plain, shifted)


# ------------------------------------------------------------------------------------------------ the step's weights


def sde_local_error(f, h: float, eta: float, d2_weight: float = 1.0) -> float:
    """A third-order SDE step's x0 estimate D (x0 weight alpha_n (1 - exp(-(1 + eta) h))) minus the one that integrates
    x0(lambda) exactly against that weight, rate e^{-rate (h - u)} du over the step (rate = 1 + eta), with D2's weight
    scaled by ``d2_weight``."""
    rate = 1.0 + eta
    lam = 0.2 - h * np.arange(3.0)
    x0s = [torch.tensor([f(v)], dtype=torch.float64) for v in lam[::-1]]
    d = multistep_x0(x0s, [h, h], h, 3, rate=rate).item()
    H = rate * h
    phi_1, phi_3 = -math.expm1(-H), 0.5 - (H + math.expm1(-H)) / H**2
    d += (d2_weight - 1.0) * (phi_3 / phi_1) * ((f(lam[0]) - 2 * f(lam[1]) + f(lam[2])) / 2)
    u = np.linspace(0.0, h, 20001)
    exact = np.trapezoid(rate * np.exp(-rate * (h - u)) * f(0.2 + u), u) / phi_1
    return d - exact


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_sde_third_order_step_is_exact_for_linear_x0_and_half_weights_the_curvature(eta):
    """As for the ODE (test_new_multistep_samplers.py): exact when x0 is linear in lambda, an O(h^2) error in D when
    it is quadratic, which counting D2 twice removes."""
    linear, quadratic = (lambda v: 1.0 + 0.3 * v), (lambda v: 1.0 + 0.3 * v + 0.5 * v**2)
    assert abs(sde_local_error(linear, 0.2, eta)) < 1e-9
    errs = np.array([sde_local_error(quadratic, h, eta) for h in (0.2, 0.1, 0.05)])
    assert np.all(np.abs(errs) > 1e-5) and np.all(np.abs(errs[:-1] / errs[1:] - 4.0) < 0.3), errs
    assert abs(sde_local_error(quadratic, 0.1, eta, d2_weight=2.0)) < 1e-9


# ------------------------------------------------------------------------------------------------ Gaussian target


def sde_output_variances(abars: np.ndarray, order: int, eta: float, d2_shift: float = 0.0) -> np.ndarray:
    """Exact output variance per eigen-direction of the DPM-Solver++ SDE of ``order`` with noise scale ``eta`` and
    the optimal model, started from the exact marginal; ``d2_shift`` adds that multiple of alpha_n D2 to every
    third-order step (-1: diffusers' step). With y the centred coordinate and k the shrink factor, x0_j = k_j y_j and
    a step is y_n = (sigma_n / sigma_s) e^{-eta h} y_s + alpha_n (1 - e^{-(1 + eta) h}) D + sigma_n sqrt(1 -
    e^{-2 eta h}) w, D linear in the last x0s (its weights read off ``multistep_x0`` on unit inputs). Orders follow
    diffusers' rules (the first steps lower; with fewer than 15 steps the last two lower too); the last step (to
    sigma = 0) returns k y."""
    n = len(abars) - 1
    a, s = np.sqrt(abars), np.sqrt(1.0 - abars)
    lam = np.log(a[:-1] / s[:-1])
    k = shrink(abars[:-1])  # (n, 2)
    out = np.zeros(2)
    for axis in range(2):
        cov = np.zeros((3, 3))  # of (y_i, y_{i-1}, y_{i-2})
        cov[0, 0] = abars[0] * SD[axis] ** 2 + 1.0 - abars[0]
        for i in range(n - 1):
            h = math.log(a[i + 1] / s[i + 1]) - lam[i]
            step_order = min(order, i + 1, n - i) if n < 15 else min(order, i + 1)
            h_prev = [lam[j] - lam[j - 1] for j in range(max(1, i - 1), i + 1)] or [h]  # newest last
            weights = []  # of x0_i, x0_{i-1}, x0_{i-2} in D
            for lag in range(step_order):
                units = [torch.tensor([float(m == lag)], dtype=torch.float64) for m in range(step_order - 1, -1, -1)]
                weights.append(multistep_x0(units, h_prev, h, step_order, rate=1.0 + eta).item())
            if step_order == 3 and d2_shift:
                r1, r2 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
                c = d2_shift / -math.expm1(-(1.0 + eta) * h) / (r1 + r2)  # in units of the x0 weight
                weights[0] += c / r1
                weights[1] += -c / r1 - c / r2
                weights[2] += c / r2
            row = np.zeros(3)
            row[0] = s[i + 1] / s[i] * math.exp(-eta * h)
            for j, w in enumerate(weights):
                row[j] += a[i + 1] * -math.expm1(-(1.0 + eta) * h) * w * k[i - j, axis]
            M = np.vstack([row, np.eye(3)[:2]])
            cov = M @ cov @ M.T
            cov[0, 0] += s[i + 1] ** 2 * -math.expm1(-2.0 * eta * h)
        out[axis] = k[-1, axis] ** 2 * cov[0, 0]
    return out


def abars_of(sampler, schedule: NoiseSchedule) -> np.ndarray:
    return np.append(schedule.alphas_cumprod[torch.from_numpy(sampler.timesteps)].numpy(), 1.0)


@pytest.mark.parametrize(("order", "eta"), [(3, 1.0), (2, 0.5), (3, 0.5)])
def test_samples_have_the_exact_moments(logsnr_schedule, order, eta):
    """20,000 samples agree with the recursion's mean MU and covariance V diag(var) V^T (so the recursion is the
    sampler's), at 12 steps."""
    sampler = make_sampler(f"dpmpp_{order}m_sde", schedule=logsnr_schedule, steps=12, eta=eta,
                           timestep_spacing="logsnr")
    x = sampler.sample(optimal_eps(logsnr_schedule), torch.from_numpy(start(logsnr_schedule, 20_000, 3)),
                       generator=torch.Generator().manual_seed(order)).numpy()
    var = sde_output_variances(abars_of(sampler, logsnr_schedule), order, eta)
    _check_sample_moments(x, MU, V @ np.diag(var) @ V.T)


def variance_errors(schedule: NoiseSchedule, order: int, eta: float, d2_shift: float = 0.0) -> np.ndarray:
    """Max relative error of the output variance at 20, 40, 80, 160 steps against the law every sampler converges to:
    the x0 prediction at t = 0 (the samplers' last step) of the exact marginal there, variance k_0^2 (abar_0 SD^2 + 1
    - abar_0)."""
    ab_0 = schedule.alphas_cumprod[0].item()
    limit = shrink(ab_0) ** 2 * (ab_0 * SD**2 + 1.0 - ab_0)
    errors = []
    for steps in (20, 40, 80, 160):
        sampler = make_sampler(f"dpmpp_{order}m_sde", schedule=schedule, steps=steps, eta=eta,
                               timestep_spacing="logsnr")
        var = sde_output_variances(abars_of(sampler, schedule), order, eta, d2_shift)
        errors.append(np.abs(var / limit - 1.0).max())
    return np.array(errors)


def rates(errors: np.ndarray) -> np.ndarray:
    """The factor the error shrinks by per doubling of the steps (4: second order, 2: first)."""
    return errors[:-1] / errors[1:]


def test_dpmpp_3m_sde_converges_at_second_order_and_diffusers_third_order_step_at_first(logsnr_schedule):
    """Max relative error of the output variance at 20, 40, 80, 160 steps (measured): dpmpp_2m_sde 6.20%, 1.71%,
    0.44%, 0.11% (shrinking 3.6-3.9x per doubling); dpmpp_3m_sde 8.59%, 1.40%, 0.32%, 0.087% (6.1, 4.4, 3.7x);
    with diffusers' third-order step 26.6%, 10.8%, 4.76%, 2.97% (2.5, 2.3, 1.6x)."""
    two = variance_errors(logsnr_schedule, 2, 1.0)
    three = variance_errors(logsnr_schedule, 3, 1.0)
    theirs = variance_errors(logsnr_schedule, 3, 1.0, d2_shift=-1.0)
    assert np.all(rates(two) > 3.3) and np.all(rates(three) > 3.3), (two, three)
    assert np.all(three[1:] < two[1:]), (two, three)
    assert np.all(rates(theirs) < 2.7) and np.all(theirs > 3 * three), (theirs, three)


@pytest.mark.parametrize("eta", [0.25, 0.5])
def test_a_smaller_eta_samples_the_same_law(logsnr_schedule, eta):
    """eta between 0 and 1 samples the same law: the output variance converges to it at second order (measured for
    dpmpp_2m_sde at 20-160 steps: eta 0.5 4.45%, 1.16%, 0.29%, 0.074%; eta 0.25 3.52%, 0.90%, 0.23%, 0.056%)."""
    errors = variance_errors(logsnr_schedule, 2, eta)
    assert np.all(rates(errors) > 3.5) and errors[-1] < 1e-3, errors
