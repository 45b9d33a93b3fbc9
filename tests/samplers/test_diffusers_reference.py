"""difflab's samplers against diffusers' schedulers (an independent implementation), step for step.

Setup shared by every comparison:

* Schedule. diffusers builds ``betas`` in float32 and takes their cumulative product in float32. difflab's schedule
  here is built from betas chosen so that its float64 ``alphas_cumprod`` equals diffusers' float32 values exactly
  (beta_t = 1 - abar32_t / abar32_{t-1}); otherwise the ~1e-7 relative difference of the two cumulative products,
  divided by sqrt(abar) ~ 6e-3 at t = 999, alone shows up at ~1e-5..1e-4 in the samples.
* Model. A fixed, smooth, random function of (x, t): the optimal eps for zero-mean Gaussian data of std 0.5
  (so the implied x0 stays O(1) at every noise level, as for a trained model) plus sqrt(abar_t) * 0.5 *
  tanh(W x + sin(3 t / T)), with W a random channel-mixing matrix. x0 and v models are the exact conversions of it.
  ``model_fn`` only ever receives integer timesteps (diffusers' Euler/Heun pass floats; they are integral here,
  which the model asserts).
* Data: float64 tensors of shape [4, 3, 5, 5]; diffusers runs parts of some steps in float32 (DPM-Solver and Euler
  cast the sample to float32), which sets the size of the remaining differences (measured ~1e-7..1e-6).
* Noise. Stochastic samplers get the same ``torch.Generator`` seed on both sides; both draw standard normal noise
  of the sample's shape and dtype from it once per noisy step, in the same order, so the trajectories coincide.

What is compared, and the conventions matched:
* DDIM: DDIMScheduler(set_alpha_to_one=True, steps_offset=0, clip_sample=False), eta 0 and 1, leading and trailing
  (T divisible by steps: diffusers' DDIM steps to t - T // steps, which is the next selected timestep only then, and
  never for its unrounded "linspace").
* DDPM: DDPMScheduler(variance_type fixed_small | fixed_large | learned_range, clip_sample=False), leading spacing
  (which ends at t = 0: diffusers adds noise at every t > 0, difflab at every step but the last).
* DPM-Solver++(2M): DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
  solver_type="midpoint", final_sigmas_type="zero"); "midpoint" is Lu et al.'s Alg. 2, D = (1 + 1/(2r)) x0_i -
  1/(2r) x0_{i-1}. difflab's trailing spacing equals diffusers'; for leading/linspace (whose definitions differ in
  diffusers' DPM scheduler) diffusers is given difflab's timesteps through ``set_timesteps(timesteps=...)``.
* Euler / Heun: EulerDiscreteScheduler / HeunDiscreteScheduler with difflab's integer timesteps (custom
  ``timesteps``; for leading and trailing also by name). For ``karras_sigmas=True`` diffusers keeps the exact
  rho-levels and calls the model at fractional timesteps, which difflab does not (it maps each level to the nearest
  integer timestep and uses that timestep's sigma); so the rho-levels and the mapping are compared separately
  (levels equal, difflab's timesteps = diffusers' fractional timesteps rounded) and the solver is compared on
  difflab's mapped timesteps. Euler with s_churn > 0 is not compared: diffusers evaluates the model before adding the
  churn noise, Karras et al.'s Alg. 2 (and difflab) after.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from difflab.diffusion.schedules import NoiseSchedule  # noqa: E402
from difflab.samplers import make_sampler  # noqa: E402

T = 1000
TOL = 1e-4
PRED = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _diffusers_alphas_cumprod() -> torch.Tensor:
    return diffusers.DDIMScheduler(
        num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02
    ).alphas_cumprod.double()


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    ab = _diffusers_alphas_cumprod()
    betas = 1.0 - ab / torch.cat([ab.new_ones(1), ab[:-1]])
    s = NoiseSchedule("diffusers-linear", betas)
    assert torch.equal(s.alphas_cumprod, ab) or (s.alphas_cumprod - ab).abs().max() < 1e-15
    return s


def make_model(schedule: NoiseSchedule, prediction_type: str = "eps", learned_var: bool = False, seed: int = 0):
    """The reference model (see the module docstring); with ``learned_var`` it appends C channels v in (-1, 1)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(3, 3, generator=g, dtype=torch.float64) * 0.7
    Wv = torch.randn(3, 3, generator=g, dtype=torch.float64) * 0.7
    ab_table = schedule.alphas_cumprod

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t_int = t.round().long()
        assert torch.all((t.double() - t_int.double()).abs() < 1e-6), t
        ab = ab_table[t_int].view(-1, 1, 1, 1)
        a, s = ab.sqrt(), (1.0 - ab).sqrt()
        xd = x.double()
        tt = t_int.double().view(-1, 1, 1, 1) / T
        mix = torch.einsum("ij,bjhw->bihw", W, xd)
        eps = s * xd / (ab * 0.25 + 1.0 - ab) + a * 0.5 * torch.tanh(mix + torch.sin(3.0 * tt))
        x0 = (xd - s * eps) / a
        out = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction_type]
        if learned_var:
            out = torch.cat([out, torch.tanh(torch.einsum("ij,bjhw->bihw", Wv, xd) + torch.cos(5.0 * tt))], dim=1)
        return out.to(x.dtype)

    return model_fn


def x_T(seed: int = 1) -> torch.Tensor:
    return torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _run_diffusers(scheduler, model_fn, x, timesteps, step_kwargs=None, scale_input=False):
    step_kwargs = step_kwargs or {}
    for t in timesteps:
        inp = scheduler.scale_model_input(x, t) if scale_input else x
        out = model_fn(inp, t.expand(x.shape[0]) if t.ndim == 0 else t)
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


# ------------------------------------------------------------------------------------------------ DDIM


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(schedule, spacing, steps, prediction_type, eta):
    ours = make_sampler("ddim", schedule=schedule, steps=steps, eta=eta, timestep_spacing=spacing)
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing=spacing,
        prediction_type=PRED[prediction_type],
    )
    ref.set_timesteps(steps)
    np.testing.assert_array_equal(ref.timesteps.numpy(), ours.timesteps)
    model = make_model(schedule, prediction_type)
    a = ours.sample(model, x_T(), prediction_type, generator=torch.Generator().manual_seed(7))
    b = _run_diffusers(ref, model, x_T(), ref.timesteps, {"eta": eta, "generator": torch.Generator().manual_seed(7)})
    assert _max_diff(a, b) < TOL, _max_diff(a, b)  # measured <= 3e-7
    if eta > 0:  # the noise matters: another seed gives another result
        c = ours.sample(model, x_T(), prediction_type, generator=torch.Generator().manual_seed(8))
        assert _max_diff(a, c) > 1e-2


# ------------------------------------------------------------------------------------------------ DDPM


@pytest.mark.parametrize(("variance_type", "steps", "prediction_type"), [
    *[(v, 50, p) for v in ("fixed_small", "fixed_large", "learned_range") for p in ("eps", "v")],
    ("fixed_small", 1000, "eps"), ("learned_range", 1000, "v"),
])
def test_ddpm_matches_diffusers(schedule, variance_type, steps, prediction_type):
    learned = variance_type == "learned_range"
    ours = make_sampler("ddpm", schedule=schedule, steps=steps, variance_type=variance_type)
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        clip_sample=False,
        variance_type=variance_type,
        timestep_spacing="leading",
        prediction_type=PRED[prediction_type],
    )
    ref.set_timesteps(steps)
    np.testing.assert_array_equal(ref.timesteps.numpy(), ours.timesteps)
    model = make_model(schedule, prediction_type, learned_var=learned)
    a = ours.sample(model, x_T(), prediction_type, generator=torch.Generator().manual_seed(3))
    b = _run_diffusers(ref, model, x_T(), ref.timesteps, {"generator": torch.Generator().manual_seed(3)})
    assert _max_diff(a, b) < TOL, _max_diff(a, b)
    c = ours.sample(model, x_T(), prediction_type, generator=torch.Generator().manual_seed(4))
    assert _max_diff(a, c) > 1e-2


def test_ddpm_learned_range_uses_the_extra_channels(schedule):
    """Same model, same noise: learned_range differs from both fixed variances, and from itself with other v."""
    model = make_model(schedule, learned_var=True)

    def run(variance_type, fn=model):
        s = make_sampler("ddpm", schedule=schedule, steps=20, variance_type=variance_type)
        return s.sample(fn, x_T(), generator=torch.Generator().manual_seed(5))

    learned, small, large = run("learned_range"), run("fixed_small"), run("fixed_large")
    assert _max_diff(learned, small) > 1e-3 and _max_diff(learned, large) > 1e-3

    def flipped(x, t):
        out = model(x, t)
        return torch.cat([out[:, :3], -out[:, 3:]], dim=1)

    assert _max_diff(learned, run("learned_range", flipped)) > 1e-3


# ------------------------------------------------------------------------------------------------ DPM-Solver++(2M)


def _dpm_ref(prediction_type="eps", **kwargs):
    return diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        prediction_type=PRED[prediction_type],
        **kwargs,
    )


@pytest.mark.parametrize("steps", [2, 5, 10, 14, 15, 20, 50])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_dpmpp_2m_trailing_matches_diffusers(schedule, steps, prediction_type):
    """Default difflab dpmpp_2m (trailing) = diffusers' DPMSolverMultistepScheduler(timestep_spacing="trailing")."""
    ours = make_sampler("dpmpp_2m", schedule=schedule, steps=steps)
    ref = _dpm_ref(prediction_type, timestep_spacing="trailing", final_sigmas_type="zero", lower_order_final=True)
    ref.set_timesteps(steps)
    np.testing.assert_array_equal(ref.timesteps.numpy(), ours.timesteps)
    model = make_model(schedule, prediction_type)
    a = ours.sample(model, x_T(), prediction_type)
    b = _run_diffusers(ref, model, x_T(), ref.timesteps)
    assert ours.nfe == steps
    assert _max_diff(a, b) < TOL, _max_diff(a, b)  # measured <= 2e-6


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
@pytest.mark.parametrize("steps", [8, 25])
def test_dpmpp_2m_other_spacings_match_diffusers_on_the_same_timesteps(schedule, spacing, steps):
    ours = make_sampler("dpmpp_2m", schedule=schedule, steps=steps, timestep_spacing=spacing)
    assert ours.timesteps[-1] == 0
    ref = _dpm_ref(final_sigmas_type="zero")
    ref.set_timesteps(timesteps=ours.timesteps.tolist())
    model = make_model(schedule)
    a = ours.sample(model, x_T(), "eps")
    b = _run_diffusers(ref, model, x_T(), ref.timesteps)
    assert _max_diff(a, b) < TOL, _max_diff(a, b)


@pytest.mark.parametrize("steps", [8, 20])
@pytest.mark.parametrize("lower_order_final", [True, False])
def test_dpmpp_2m_sigma_min_and_lower_order_final_match_diffusers(schedule, steps, lower_order_final):
    """final_sigmas_type="sigma_min": the last step ends at sigma of t = 0; there lower_order_final (< 15 steps)
    decides whether that last step is first or second order, as in diffusers."""
    kwargs = {"final_sigmas_type": "sigma_min", "lower_order_final": lower_order_final}
    ours = make_sampler("dpmpp_2m", schedule=schedule, steps=steps, **kwargs)
    ref = _dpm_ref(timestep_spacing="trailing", **kwargs)
    ref.set_timesteps(steps)
    model = make_model(schedule)
    a = ours.sample(model, x_T(), "eps")
    b = _run_diffusers(ref, model, x_T(), ref.timesteps)
    assert _max_diff(a, b) < TOL, _max_diff(a, b)
    other = make_sampler(
        "dpmpp_2m",
        schedule=schedule,
        steps=steps,
        final_sigmas_type="sigma_min",
        lower_order_final=not lower_order_final,
    )
    changed = _max_diff(a, other.sample(model, x_T(), "eps"))
    assert (changed > 1e-5) if steps < 15 else (changed == 0.0)


# ------------------------------------------------------------------------------------------------ Euler / Heun


def _karras_ref(cls, prediction_type="eps", **kwargs):
    return cls(
        num_train_timesteps=T,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        prediction_type=PRED[prediction_type],
        **kwargs,
    )


def _vp_to_ve(schedule, x, t0):
    return x / schedule.alphas_cumprod[int(t0)].sqrt().item()


@pytest.mark.parametrize("name", ["euler", "heun"])
@pytest.mark.parametrize(("spacing", "steps"), [("leading", 10), ("trailing", 10), ("linspace", 7), ("leading", 30)])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_euler_heun_match_diffusers(schedule, name, spacing, steps, prediction_type):
    ours = make_sampler(name, schedule=schedule, steps=steps, timestep_spacing=spacing)
    cls = diffusers.EulerDiscreteScheduler if name == "euler" else diffusers.HeunDiscreteScheduler
    ref = _karras_ref(cls, prediction_type)
    if spacing == "linspace":  # diffusers' Euler/Heun linspace is unrounded (fractional timesteps)
        ref.set_timesteps(timesteps=ours.timesteps.tolist())
    else:
        ref = _karras_ref(cls, prediction_type, timestep_spacing=spacing)
        ref.set_timesteps(steps)
    model = make_model(schedule, prediction_type)
    a = ours.sample(model, x_T(), prediction_type)
    b = _run_diffusers(ref, model, _vp_to_ve(schedule, x_T(), ours.timesteps[0]), ref.timesteps, scale_input=True)
    assert ours.nfe == len(ref.timesteps) == (steps if name == "euler" else 2 * steps - 1)
    np.testing.assert_array_equal(np.unique(ref.timesteps.numpy()).astype(np.int64)[::-1], ours.timesteps)
    assert _max_diff(a, b) < TOL, _max_diff(a, b)  # measured <= 1e-6 (diffusers' float32 sample)


@pytest.mark.parametrize("steps", [5, 10, 25, 50])
def test_karras_levels_and_timestep_mapping_match_diffusers(schedule, steps):
    """difflab's rho-levels are diffusers' (use_karras_sigmas with linspace spacing spans sigma_{T-1}..sigma_0), and
    the integer timesteps difflab maps them to are diffusers' log-linearly interpolated timesteps rounded."""
    ours = make_sampler("euler", schedule=schedule, steps=steps, karras_sigmas=True)
    ref = _karras_ref(diffusers.EulerDiscreteScheduler, use_karras_sigmas=True, timestep_spacing="linspace")
    ref.set_timesteps(steps)
    from difflab.samplers.karras import karras_sigma_levels, schedule_sigmas

    table = schedule_sigmas(schedule)
    levels = karras_sigma_levels(table[0], table[-1], steps)
    np.testing.assert_allclose(levels, ref.sigmas[:-1].double().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(ours.timesteps, np.round(ref.timesteps.double().numpy()).astype(np.int64))
    # the sigmas difflab then uses are those timesteps' own, within half a table spacing of the rho-levels
    np.testing.assert_array_equal(ours.sigmas[:-1], table[ours.timesteps])
    assert np.all(np.abs(np.log(ours.sigmas[:-1] / levels)) <= 0.5 * np.abs(np.log(table[1] / table[0])) + 1e-12)


@pytest.mark.parametrize("name", ["euler", "heun"])
@pytest.mark.parametrize("steps", [6, 12, 40])
def test_karras_samplers_match_diffusers_on_the_mapped_timesteps(schedule, name, steps):
    ours = make_sampler(name, schedule=schedule, steps=steps, karras_sigmas=True)
    cls = diffusers.EulerDiscreteScheduler if name == "euler" else diffusers.HeunDiscreteScheduler
    ref = _karras_ref(cls)
    ref.set_timesteps(timesteps=ours.timesteps.tolist())
    np.testing.assert_allclose(ref.sigmas.unique().double().numpy()[::-1], ours.sigmas, rtol=1e-6)
    model = make_model(schedule)
    a = ours.sample(model, x_T(), "eps")
    b = _run_diffusers(ref, model, _vp_to_ve(schedule, x_T(), ours.timesteps[0]), ref.timesteps, scale_input=True)
    assert _max_diff(a, b) < TOL, _max_diff(a, b)

