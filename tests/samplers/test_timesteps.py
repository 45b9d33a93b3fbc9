"""Timestep selection against diffusers' published ``timestep_spacing`` values (0-based, steps_offset = 0).

Lin et al. 2023, Table 2 (T = 1000, 10 steps, shown there 1-based): leading 900..0, linspace 999, 888, ..., 0,
trailing 999, 899, ..., 99.
"""

from __future__ import annotations

import numpy as np
import pytest

from difflab.diffusion import make_schedule
from difflab.samplers import TIMESTEP_SPACINGS, make_sampler, select_timesteps


def test_published_t1000_10_steps():
    np.testing.assert_array_equal(
        select_timesteps(1000, 10, "leading"), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    )
    np.testing.assert_array_equal(
        select_timesteps(1000, 10, "linspace"), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    )
    np.testing.assert_array_equal(
        select_timesteps(1000, 10, "trailing"), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    )


def test_default_is_leading():
    np.testing.assert_array_equal(select_timesteps(1000, 10), select_timesteps(1000, 10, "leading"))


def test_non_divisible_examples():
    # leading: stride T // steps = 333; trailing: round(1000, 666.67, 333.33) - 1; linspace: 999 * (3, 2, 1, 0) / 3
    np.testing.assert_array_equal(select_timesteps(1000, 3, "leading"), [666, 333, 0])
    np.testing.assert_array_equal(select_timesteps(1000, 3, "trailing"), [999, 666, 332])
    np.testing.assert_array_equal(select_timesteps(1000, 4, "linspace"), [999, 666, 333, 0])
    # T = 50, 7 steps: T // 7 = 7 -> 0, 7, ..., 42; trailing: 50 - 50k/7 = 50, 42.86, 35.71, 28.57, 21.43, 14.29, 7.14
    np.testing.assert_array_equal(select_timesteps(50, 7, "leading"), [42, 35, 28, 21, 14, 7, 0])
    np.testing.assert_array_equal(select_timesteps(50, 7, "trailing"), [49, 42, 35, 28, 20, 13, 6])
    np.testing.assert_array_equal(select_timesteps(50, 7, "linspace"), [49, 41, 33, 24, 16, 8, 0])


@pytest.mark.parametrize(
    ("T", "steps"), [(T, steps) for T in (1000, 250, 100) for steps in (1, 2, 4, 5, 10, 20, 25, 50) if T % steps == 0]
)
def test_divisible_closed_forms(T, steps):
    k = np.arange(steps)[::-1]
    stride = T // steps
    np.testing.assert_array_equal(select_timesteps(T, steps, "leading"), k * stride)
    np.testing.assert_array_equal(select_timesteps(T, steps, "trailing"), (k + 1) * stride - 1)


@pytest.mark.parametrize("T", [10, 50, 100, 250, 1000])
@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_every_step_count_gives_valid_timesteps(T, spacing):
    """For every 1 <= steps <= T: exactly ``steps`` distinct, strictly decreasing timesteps in [0, T-1].

    (Regression: trailing used np.arange(T, 0, -T/steps), which returns steps + 1 values for e.g. T=100, steps=29,
    the extra one becoming timestep -1.)
    """
    for steps in range(1, T + 1):
        ts = select_timesteps(T, steps, spacing)
        assert ts.dtype == np.int64
        assert ts.shape == (steps,), (T, steps, ts)
        assert ts.min() >= 0 and ts.max() <= T - 1, (T, steps, ts)
        assert np.all(np.diff(ts) < 0), (T, steps, ts)
        if spacing == "trailing":
            assert ts[0] == T - 1
        elif spacing == "linspace":
            # one step: linspace(0, T-1, 1) = [0], as in diffusers
            assert ts[-1] == 0 and ts[0] == (T - 1 if steps > 1 else 0)
        else:
            assert ts[-1] == 0 and ts[0] == (steps - 1) * (T // steps)
        if steps == T:
            np.testing.assert_array_equal(ts, np.arange(T)[::-1])


def test_trailing_regression_cases():
    np.testing.assert_array_equal(
        select_timesteps(100, 29, "trailing"),
        [
            99,
            96,
            92,
            89,
            85,
            82,
            78,
            75,
            71,
            68,
            65,
            61,
            58,
            54,
            51,
            47,
            44,
            40,
            37,
            33,
            30,
            27,
            23,
            20,
            16,
            13,
            9,
            6,
            2,
        ],
    )
    assert len(select_timesteps(1000, 61, "trailing")) == 61


@pytest.mark.parametrize("steps", [0, -1, 1001, 2.5, True, "10"])
def test_steps_out_of_range_raises_naming_value(steps):
    with pytest.raises(ValueError, match=rf"sampler.steps={steps!r}".replace(".", r"\.", 1)):
        select_timesteps(1000, steps, "leading")


@pytest.mark.parametrize("spacing", ["uniform", "Leading", "quad", ""])
def test_unknown_spacing_raises_naming_it(spacing):
    with pytest.raises(ValueError, match=f"timestep_spacing='{spacing}'"):
        select_timesteps(1000, 10, spacing)


def test_make_sampler_validates_through_the_same_path():
    sched = make_schedule("linear", num_timesteps=1000)
    with pytest.raises(ValueError, match="sampler.steps=0"):
        make_sampler("ddim", schedule=sched, steps=0)
    with pytest.raises(ValueError, match="sampler.steps=2000"):
        make_sampler("ddpm", schedule=sched, steps=2000)
    with pytest.raises(ValueError, match="timestep_spacing='nope'"):
        make_sampler("ddim", schedule=sched, steps=10, timestep_spacing="nope")
    with pytest.raises(ValueError, match="sampler.name='euler_a'"):
        make_sampler("euler_a", schedule=sched, steps=10)
    with pytest.raises(ValueError, match="eta=-0.5"):
        make_sampler("ddim", schedule=sched, steps=10, eta=-0.5)
    with pytest.raises(ValueError, match="variance_type='learned'"):
        make_sampler("ddpm", schedule=sched, steps=10, variance_type="learned")
    s = make_sampler("ddim", schedule=sched, steps=10, timestep_spacing="trailing")
    np.testing.assert_array_equal(s.timesteps, [999, 899, 799, 699, 599, 499, 399, 299, 199, 99])
    np.testing.assert_array_equal(make_sampler("ddpm", schedule=sched).timesteps, np.arange(1000)[::-1])
