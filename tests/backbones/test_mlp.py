"""MLP backbone: shapes, conditioning, time dependence, validation and trainability."""

import pytest
import torch

from difflab.backbones import MLP, count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def test_default_size_and_shapes():
    model = MLP()
    assert 40_000 <= count_parameters(model) <= 80_000
    x, t = torch.randn(16, 2), torch.randint(0, 1000, (16,))
    assert model(x, t).shape == (16, 2)
    assert MLP(data_dim=5, out_channels=3, num_layers=2, hidden_dim=32)(torch.randn(4, 5), t[:4]).shape == (4, 3)


def test_scalar_timestep_is_broadcast():
    torch.manual_seed(0)
    model = MLP().eval()
    x = torch.randn(3, 2)
    torch.testing.assert_close(model(x, torch.tensor(7)), model(x, torch.full((3,), 7)))


def test_output_depends_on_time():
    torch.manual_seed(0)
    model = MLP().eval()
    x = torch.randn(8, 2)
    a, b = model(x, torch.full((8,), 10)), model(x, torch.full((8,), 900))
    assert (a - b).abs().mean() > 1e-3


def test_class_conditioning_and_null_label():
    torch.manual_seed(0)
    model = MLP(num_classes=3).eval()
    x, t = torch.randn(6, 2), torch.randint(0, 1000, (6,))
    out0, out1 = model(x, t, torch.zeros(6, dtype=torch.long)), model(x, t, torch.ones(6, dtype=torch.long))
    assert out0.shape == (6, 2) and (out0 - out1).abs().mean() > 1e-3
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((6,), 3)))
    assert model.cond.label_embed.num_embeddings == 4


def test_labels_rejected_without_num_classes():
    with pytest.raises(ValueError, match="num_classes=None"):
        MLP()(torch.randn(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(num_layers=0), "num_layers.*0"), (dict(dropout=1.0), "dropout.*1.0"),
     (dict(num_classes=0), "num_classes.*0")],
)
def test_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def test_wrong_input_width_is_reported():
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        MLP()(torch.randn(4, 3), torch.zeros(4))


def test_overfits_a_fixed_time_dependent_target():
    torch.manual_seed(0)
    model = MLP(hidden_dim=64, num_layers=2)
    x, t = torch.randn(64, 2), torch.randint(0, 1000, (64,))
    target = torch.stack([torch.sin(x[:, 0] * 2 + t / 300), x[:, 1] * torch.cos(t / 200.0)], dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        loss = torch.nn.functional.mse_loss(model(x, t), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
