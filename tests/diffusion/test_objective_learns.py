"""Every prediction type and loss, trained through DiffusionObjective, learns the closed-form optimal denoiser.

For data x0 ~ N(mu, s^2) the posterior of x0 given x_t = sqrt(ab) x0 + sqrt(1 - ab) eps is Gaussian with mean
mu + k (x_t - sqrt(ab) mu), k = sqrt(ab) s^2 / (ab s^2 + 1 - ab). eps and v are affine in x0 given x_t, so their
posteriors are Gaussian too: their mean is also their median, the minimiser of l1 and (symmetric) huber losses. A
network affine in x_t per timestep can represent the optimum exactly, so after training, its prediction mapped to
x0 (``to_x0_eps``) must equal the posterior mean for every objective and loss. This is the quick guard of the
default run; tests/integration/test_moons_learns.py (-m slow) trains each objective on the two moons end to end.
"""

from __future__ import annotations

import pytest
import torch

from difflab.diffusion import DiffusionObjective, GaussianDiffusion, make_schedule
from difflab.diffusion.parameterization import to_x0_eps

pytestmark = pytest.mark.usefixtures("one_thread")

MU, STD = 0.5, 0.3
TIMESTEPS = torch.tensor([20, 300, 700])  # high, middle and low signal-to-noise ratio


def posterior_mean_coefficients(alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(slope, intercept) of E[x0 | x_t] = slope * x_t + intercept for x0 ~ N(MU, STD^2)."""
    k = alpha_bar.sqrt() * STD**2 / (alpha_bar * STD**2 + 1 - alpha_bar)
    return k, MU - k * alpha_bar.sqrt() * MU


class AffinePerTimestep(torch.nn.Module):
    """output = slope[t] * x_t + intercept[t] on the three timesteps in TIMESTEPS."""

    def __init__(self) -> None:
        super().__init__()
        self.slope = torch.nn.Parameter(torch.zeros(len(TIMESTEPS)))
        self.intercept = torch.nn.Parameter(torch.zeros(len(TIMESTEPS)))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        index = torch.searchsorted(TIMESTEPS, t)
        return self.slope[index, None] * x_t + self.intercept[index, None]


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_the_trained_prediction_is_the_posterior_mean(prediction_type, loss):
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(make_schedule("linear", num_timesteps=1000))
    objective = DiffusionObjective(prediction_type=prediction_type, loss=loss, huber_delta=0.1)
    network = AffinePerTimestep()
    optimizer = torch.optim.Adam(network.parameters(), lr=0.03)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=600)
    for _ in range(600):
        x0 = MU + STD * torch.randn(4096, 1)
        t = TIMESTEPS[torch.randint(len(TIMESTEPS), (4096,))]
        optimizer.zero_grad()
        objective(network, diffusion, x0, t, torch.randn_like(x0)).mean().backward()
        optimizer.step()
        scheduler.step()

    alpha_bar = diffusion.alpha_bar(TIMESTEPS)
    slope, intercept = posterior_mean_coefficients(alpha_bar)
    x_t = torch.linspace(-2, 2, 9, dtype=torch.float64)[None, :].expand(len(TIMESTEPS), 9).reshape(-1, 1)
    t = TIMESTEPS.repeat_interleave(9)
    with torch.no_grad():
        predicted_x0, _ = to_x0_eps(network(x_t.float(), t).double(), x_t, alpha_bar.repeat_interleave(9),
                                    prediction_type)
    expected = slope.repeat_interleave(9)[:, None] * x_t + intercept.repeat_interleave(9)[:, None]
    # an untrained (zero) network is off by 0.3 or more; the fits here are within 0.007
    torch.testing.assert_close(predicted_x0, expected, atol=0.03, rtol=0)
