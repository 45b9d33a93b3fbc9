"""``Sampler.sample(..., callback=f)``: f sees the start noise and the state after every step, and changes nothing."""

from __future__ import annotations

import pytest
import torch

from difflab.diffusion import make_schedule
from difflab.samplers import make_sampler
from difflab.samplers.trajectory import Trajectory, TrajectoryRecorder

pytestmark = pytest.mark.usefixtures("one_thread")

T = 50
STEPS = 6
SAMPLERS = [
    ("ddpm", {}),
    ("ddim", {"eta": 0.0}),
    ("ddim", {"eta": 1.0}),
    ("dpmpp_2m", {}),
    ("dpmpp_2m", {"final_sigmas_type": "sigma_min"}),  # ends at abar_0 < 1, not at x0
    ("dpmpp_3m", {"timestep_spacing": "logsnr"}),
    ("dpmpp_2m_sde", {}),  # noise drawn each step: the next input is still x after the step
    ("unipc", {}),  # x after a step is the predictor's: the next input, before that evaluation corrects it
    ("unipc", {"final_sigmas_type": "sigma_min"}),
    ("euler", {}),
    ("euler", {"s_churn": 2.0}),  # Karras Alg. 2: noise added before each evaluation
    ("heun", {}),
]
IDS = [f"{name}-{'-'.join(f'{k}{v}' for k, v in kw.items())}".rstrip("-") for name, kw in SAMPLERS]


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("linear", num_timesteps=T)


def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed eps prediction depending on x and t; records its inputs."""
    model_fn.inputs.append((x.clone(), int(t[0])))
    return torch.tanh(0.7 * x + t.view(-1, *[1] * (x.ndim - 1)).to(x.dtype) / T)


model_fn.inputs = []


def generators(indices) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(1000 + i) for i in indices]


def start_noise(n: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(n, 1, 3, 3, generator=torch.Generator().manual_seed(7), dtype=dtype)


@pytest.mark.parametrize(("name", "options"), SAMPLERS, ids=IDS)
def test_the_callback_sees_every_step_and_changes_nothing(name, options, schedule):
    sampler = make_sampler(name, schedule=schedule, steps=STEPS, **options)
    x_T = start_noise(5)
    plain = sampler.sample(model_fn, x_T, "eps", generators(range(5)))
    nfe = sampler.nfe

    calls = []
    recorder = TrajectoryRecorder(5)

    def callback(i, t, x, x0):
        calls.append((i, t, x0 is None))
        recorder(i, t, x, x0)

    watched = sampler.sample(model_fn, x_T, "eps", generators(range(5)), callback=callback)
    assert torch.equal(watched, plain) and sampler.nfe == nfe
    n = len(sampler.timesteps)
    # the start noise, then one call per step with that step's model timestep and x0 prediction
    assert calls == [(0, int(sampler.timesteps[0]), True)] + [(i + 1, int(t), False)
                                                               for i, t in enumerate(sampler.timesteps)]
    trajectory = recorder.trajectory()
    assert trajectory.xt.shape == (n + 1, *x_T.shape) and trajectory.x0.shape == (n, *x_T.shape)
    assert torch.equal(trajectory.xt[0], x_T)
    assert torch.equal(trajectory.xt[-1], plain)
    assert trajectory.timesteps.tolist() == sampler.timesteps.tolist()


@pytest.mark.parametrize(("name", "options"), [s for s in SAMPLERS if "s_churn" not in s[1]],
                         ids=[i for i, s in zip(IDS, SAMPLERS) if "s_churn" not in s[1]])
def test_the_state_after_a_step_is_what_the_model_sees_next(name, options, schedule):
    """x after step i is x_t on the model's scale: the input of step i + 1's (first) model evaluation."""
    sampler = make_sampler(name, schedule=schedule, steps=STEPS, **options)
    recorder = TrajectoryRecorder(4)
    model_fn.inputs.clear()
    sampler.sample(model_fn, start_noise(4), "eps", generators(range(4)), callback=recorder)
    per_step = 2 if name == "heun" else 1  # Heun evaluates twice a step, but once in the last
    first_inputs = model_fn.inputs[::per_step]
    xt = recorder.trajectory().xt
    assert len(first_inputs) == len(sampler.timesteps)
    for i, (x_in, t_in) in enumerate(first_inputs):
        assert t_in == int(sampler.timesteps[i])
        if i == 0 and name in ("euler", "heun"):  # x_T goes through their variance-exploding scale and back
            torch.testing.assert_close(xt[0], x_in)
        else:
            assert torch.equal(xt[i], x_in), f"step {i + 1}"


def test_ddim_x0_predictions_are_the_closed_form_of_the_models_eps(schedule):
    """Song et al. 2021, eq. 12: x0 = (x_t - sqrt(1 - abar_t) eps(x_t, t)) / sqrt(abar_t)."""
    sampler = make_sampler("ddim", schedule=schedule, steps=STEPS, eta=0.0)
    recorder = TrajectoryRecorder(3)
    sampler.sample(model_fn, start_noise(3, torch.float64), "eps", callback=recorder)
    trajectory = recorder.trajectory()
    for i, t in enumerate(trajectory.timesteps.tolist()):
        x_t = trajectory.xt[i]
        ab = schedule.alphas_cumprod[t]
        eps = model_fn(x_t, torch.full((3,), t))
        torch.testing.assert_close(trajectory.x0[i], (x_t - (1 - ab).sqrt() * eps) / ab.sqrt())


def test_a_samples_trajectory_does_not_depend_on_its_batch(schedule):
    sampler = make_sampler("ddpm", schedule=schedule, steps=STEPS)
    whole, alone = TrajectoryRecorder(2), TrajectoryRecorder(2)
    x_T = start_noise(6)
    sampler.sample(model_fn, x_T, "eps", generators(range(6)), callback=whole)
    sampler.sample(model_fn, x_T[:2], "eps", generators(range(2)), callback=alone)
    assert torch.equal(whole.trajectory().xt, alone.trajectory().xt)
    assert torch.equal(whole.trajectory().x0, alone.trajectory().x0)


def test_trajectories_of_consecutive_batches_join(schedule):
    sampler = make_sampler("ddim", schedule=schedule, steps=STEPS)
    parts = []
    for indices in (range(0, 3), range(3, 5)):
        recorder = TrajectoryRecorder(len(indices))
        sampler.sample(model_fn, start_noise(5)[indices.start:indices.stop], "eps", callback=recorder)
        parts.append(recorder.trajectory())
    joined = Trajectory.cat(parts)
    assert joined.xt.shape == (STEPS + 1, 5, 1, 3, 3)
    assert torch.equal(joined.xt[:, 3:], parts[1].xt)
    other = make_sampler("ddim", schedule=schedule, steps=STEPS - 1)
    recorder = TrajectoryRecorder(1)
    other.sample(model_fn, start_noise(1), "eps", callback=recorder)
    with pytest.raises(ValueError, match="different timesteps"):
        Trajectory.cat([parts[0], recorder.trajectory()])


def test_a_recorder_records_one_run():
    recorder = TrajectoryRecorder(1)
    with pytest.raises(RuntimeError, match="no sampler step was recorded"):
        recorder.trajectory()
    recorder(0, 9, torch.zeros(1, 2), None)
    with pytest.raises(RuntimeError, match="step 0 was reported after 1 states"):
        recorder(0, 9, torch.zeros(1, 2), None)
    with pytest.raises(ValueError, match="count=0 must be an integer >= 1"):
        TrajectoryRecorder(0)
