"""DDPM U-Net: exact size of the paper's CIFAR-10 model, shapes, conditioning, validation, bf16 and trainability."""

import pytest
import torch

from difflab.backbones import UNet, count_parameters

TINY = dict(in_channels=1, image_size=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
            attention_resolutions=(4,), dropout=0.0, num_groups=8)


pytestmark = pytest.mark.usefixtures("one_thread")


def perturb_zero_init(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Give the zero-initialised layers (res-block conv2, attention proj_out, conv_out) random weights."""
    torch.manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().max() == 0:
                p.normal_(0.0, std)
    return model


def test_ddpm_cifar10_config_has_exactly_35_746_307_parameters():
    torch.manual_seed(0)
    model = UNet(in_channels=3, image_size=32, base_channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2,
                 attention_resolutions=(16,), dropout=0.1)
    assert count_parameters(model) == 35_746_307
    assert count_parameters(UNet()) == 35_746_307  # these are the defaults
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 32, 32), torch.tensor([10]))
    assert out.shape == (1, 3, 32, 32)


def test_count_parameters_trainable_only():
    model = UNet(**TINY)
    total = count_parameters(model)
    model.conv_in.weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - model.conv_in.weight.numel()


def test_fresh_model_outputs_zero_like_ddpm():
    out = UNet(**TINY)(torch.randn(2, 1, 8, 8), torch.tensor([0, 999]))
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        TINY,
        dict(TINY, num_res_blocks=2, num_classes=10, out_channels=2),
        dict(in_channels=1, image_size=16, base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1,
             attention_resolutions=(8,), num_groups=8, num_heads=2),
        dict(in_channels=3, image_size=32, base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1,
             attention_resolutions=(16, 8), num_groups=8, num_classes=5),
        dict(in_channels=3, image_size=16, base_channels=8, channel_mults=(1,), num_res_blocks=1,
             attention_resolutions=(), num_groups=4),
    ],
)
def test_output_shapes(kwargs):
    model = UNet(**kwargs).eval()
    size, cin = kwargs["image_size"], kwargs["in_channels"]
    x, t = torch.randn(3, cin, size, size), torch.tensor([0, 1, 999])
    expected = (3, kwargs.get("out_channels") or cin, size, size)
    assert model(x, t).shape == expected
    if kwargs.get("num_classes"):
        assert model(x, t, torch.tensor([0, 1, kwargs["num_classes"]])).shape == expected


def test_time_dependence():
    model = perturb_zero_init(UNet(**TINY)).eval()
    x = torch.randn(4, 1, 8, 8)
    a, b = model(x, torch.full((4,), 5)), model(x, torch.full((4,), 800))
    assert (a - b).abs().mean() > 1e-3
    torch.testing.assert_close(model(x, torch.tensor(5)), a)  # scalar t broadcasts


def test_class_conditioning_and_null_label():
    model = perturb_zero_init(UNet(**dict(TINY, num_classes=4))).eval()
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([3, 100, 500, 900])
    out0, out2 = model(x, t, torch.zeros(4, dtype=torch.long)), model(x, t, torch.full((4,), 2))
    assert (out0 - out2).abs().mean() > 1e-3
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((4,), 4)))
    assert model.cond.label_embed.num_embeddings == 5


def test_labels_rejected_without_num_classes():
    with pytest.raises(ValueError, match="num_classes=None"):
        UNet(**TINY)(torch.randn(2, 1, 8, 8), torch.zeros(2), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(image_size=10, channel_mults=(1, 2, 2)), r"image_size=10 must be a positive multiple of 4"),
        (dict(attention_resolutions=(7,)),
         r"attention_resolutions contains 7, but this U-Net only has resolutions \[8, 4\] for image_size=8"),
        (dict(base_channels=20), r"num_groups=8 does not divide channel count 20"),
        (dict(num_groups=32), r"num_groups=32 does not divide channel count 16"),
        (dict(channel_mults=()), r"channel_mults is empty"),
        (dict(num_res_blocks=0), r"num_res_blocks=0 must be an integer >= 1"),
        (dict(dropout=1.0), r"dropout=1.0 must be in \[0, 1\)"),
        (dict(dropout=-0.1), r"dropout=-0.1 must be in \[0, 1\)"),
        (dict(num_heads=3), r"num_heads=3 does not divide"),
    ],
)
def test_validation_errors_name_the_bad_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        UNet(**dict(TINY, **overrides))


def test_bf16_autocast_matches_float32():
    model = perturb_zero_init(UNet(**dict(TINY, num_classes=2))).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([10, 600]), torch.tensor([0, 1])
    ref = model(x, t, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, y)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out.float() - ref).norm() / ref.norm() < 0.05


def test_overfit_fixed_batch_and_every_parameter_learns():
    torch.manual_seed(0)
    model = UNet(**dict(TINY, num_classes=3))
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 250, 500, 999])
    y = torch.tensor([0, 1, 2, 3])  # 3 = null label, so every embedding row is used
    target = torch.randn(4, 1, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(model(x, t, y), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
    frozen = [n for n, p in model.named_parameters() if torch.equal(p, init[n])]
    assert not frozen, f"parameters that never received gradient: {frozen}"
