"""The fast paths (conf/train.yaml ``speed``, ``ema.foreach``, ``optim.optimizer.fused/foreach``) change nothing but
rounding: each is checked against the plain path or a closed form."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config
from torch import nn

from difflab.backbones import UNet
from difflab.builders import build_module
from difflab.data import DataFacts
from difflab.diffusion import DiffusionObjective, make_schedule
from difflab.ema import ExponentialMovingAverage
from difflab.module import DiffusionModule
from difflab.samplers import make_sampler

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_unet(**overrides) -> UNet:
    torch.manual_seed(0)
    kwargs = dict(in_channels=1, image_size=8, out_channels=1, base_channels=16, channel_mults=[1, 2], num_res_blocks=1,
                  attention_resolutions=[4], dropout=0.0, num_groups=8)
    return UNet(**{**kwargs, **overrides})


def module_of(backbone: nn.Module, **kwargs) -> DiffusionModule:
    return DiffusionModule(backbone, make_schedule("linear", num_timesteps=1000), DiffusionObjective(),
                           torch.optim.AdamW, data_shape=[1, 8, 8], **kwargs)


def randomise(network: nn.Module, seed: int) -> None:
    """Non-zero weights everywhere (the U-Net's zero-initialised layers would hide differences)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.mark.parametrize("foreach", [True, False])
def test_ema_update_is_the_closed_form_lerp_and_copies_buffers(foreach):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ExponentialMovingAverage(model, max_decay=0.9, power=None, foreach=foreach)
    before = {k: v.clone() for k, v in ema.shadow.state_dict().items()}
    randomise(model, 1)
    model.train()(torch.randn(8, 3))  # moves the running statistics (buffers)
    decay = ema.update(model, step=5)
    assert decay == 0.9
    for name, value in model.state_dict().items():
        got = ema.shadow.state_dict()[name]
        if name.endswith(("weight", "bias")):
            torch.testing.assert_close(got, 0.9 * before[name] + 0.1 * value, rtol=0, atol=1e-7)
        else:
            assert torch.equal(got, value), name  # running_mean, running_var, num_batches_tracked copied


def test_ema_foreach_and_loop_agree_over_many_steps():
    model = tiny_unet()
    a, b = (ExponentialMovingAverage(model, foreach=f) for f in (True, False))
    for step in range(5):
        randomise(model, step)
        a.update(model, step)
        b.update(model, step)
    for (name, x), y in zip(a.shadow.state_dict().items(), b.shadow.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-7, msg=name)


def test_the_logged_gradient_norm_is_the_norm_of_all_gradients_and_clipping_matches_torch(monkeypatch):
    module = module_of(tiny_unet(), ema_decay=None)
    randomise(module.backbone, 0)
    module._loss([torch.rand(4, 1, 8, 8) * 2 - 1], torch.Generator().manual_seed(0)).backward()
    before = [p.grad.clone() for p in module.backbone.parameters() if p.grad is not None]
    grads = torch.cat([p.grad.flatten() for p in module.backbone.parameters() if p.grad is not None])
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kwargs: logged.__setitem__(name, value))
    max_norm = float(grads.norm()) / 3  # clipping acts
    module.configure_gradient_clipping(None, max_norm, "norm")
    torch.testing.assert_close(logged["train/grad_norm"].double(), grads.double().norm(), rtol=2e-5, atol=0)
    scale = max_norm / (float(grads.double().norm()) + 1e-6)  # torch.nn.utils.clip_grad_norm_'s documented factor
    after = [p.grad for p in module.backbone.parameters() if p.grad is not None]
    for got, grad in zip(after, before, strict=True):
        torch.testing.assert_close(got, grad * scale, rtol=1e-5, atol=1e-9)


def test_channels_last_changes_the_layout_not_the_loss_or_the_samples():
    plain, nhwc = (module_of(tiny_unet(), channels_last=c) for c in (False, True))
    randomise(plain.backbone, 0)
    nhwc.backbone.load_state_dict(plain.backbone.state_dict())
    nhwc.ema.shadow.load_state_dict(plain.backbone.state_dict())
    plain.ema.shadow.load_state_dict(plain.backbone.state_dict())
    for network in (nhwc.backbone, nhwc.ema.shadow):
        convs = [p for p in network.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                             for p in convs)
    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    losses = [m._loss([x0], torch.Generator().manual_seed(3)) for m in (plain, nhwc)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=0)
    sampler = make_sampler("ddim", schedule=plain.schedule, steps=5)
    a, b = (m.sample(sampler, 4, seed=1) for m in (plain, nhwc))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert set(nhwc.state_dict()) == set(plain.state_dict())


def test_channels_last_on_points_is_refused_naming_the_setting(tmp_path, hydra_cleanup):
    cfg = compose_config("train", ["dataset=moons", "backbone=mlp", "speed.channels_last=true"], tmp_path)
    with pytest.raises(ValueError, match=r"speed\.channels_last=true needs image data \[C, H, W\].*\[2\]"):
        build_module(cfg, DataFacts(shape=(2,)))


def test_a_bad_compile_mode_is_refused_naming_the_modes(tmp_path, hydra_cleanup):
    for compile in ("true", "false"):  # refused even while compile is off
        cfg = compose_config("train", [f"speed.compile={compile}", "speed.compile_mode=fastest"], tmp_path)
        with pytest.raises(ValueError, match=r"speed\.compile_mode='fastest' is not one of \[None, 'default'"):
            build_module(cfg, DataFacts(shape=(1, 8, 8), num_classes=10))


def test_the_default_config_takes_the_plain_paths_and_a_foreach_ema(tmp_path, hydra_cleanup):
    cfg = compose_config("train", [], tmp_path)
    module = build_module(cfg, DataFacts(shape=(1, 8, 8), num_classes=10))
    assert cfg.speed.compile is False and cfg.speed.channels_last is False
    assert module.ema.foreach and module.memory_format == torch.contiguous_format
    assert module.finite_check_every_n_steps == cfg.trainer.log_every_n_steps == 50
    assert not hasattr(module.backbone, "_compiled_call_impl") or module.backbone._compiled_call_impl is None
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"] is None and optimizer.defaults["foreach"] is None


@pytest.mark.parametrize("setting", [["optim.optimizer.fused=true"], ["optim.optimizer.foreach=true"]])
def test_fused_and_foreach_adamw_step_like_the_loop(setting, tmp_path, hydra_cleanup):
    """Three AdamW steps (with weight decay) from the same gradients: the fused kernel and the foreach kernels give
    the parameters of torch's per-parameter loop."""
    overrides = ["optim.optimizer.weight_decay=0.1"]
    params = {}
    for name, extra in (("loop", ["optim.optimizer.foreach=false"]), ("fast", setting)):
        cfg = compose_config("train", overrides + extra, tmp_path)
        module = build_module(cfg, DataFacts(shape=(1, 8, 8), num_classes=10))
        randomise(module.backbone, 0)
        optimizer = module.configure_optimizers()["optimizer"]
        for step in range(3):
            g = torch.Generator().manual_seed(step)
            for p in module.backbone.parameters():
                p.grad = torch.randn(p.shape, generator=g)
            optimizer.step()
        params[name] = [p.detach().clone() for p in module.backbone.parameters()]
    for a, b in zip(params["loop"], params["fast"]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_fused_and_foreach_together_are_refused_before_training(tmp_path, hydra_cleanup):
    cfg = compose_config("train", ["optim.optimizer.fused=true", "optim.optimizer.foreach=true"], tmp_path)
    with pytest.raises(ValueError, match=r"optim\.optimizer: .*fused.*foreach"):
        build_module(cfg, DataFacts(shape=(1, 8, 8), num_classes=10))


def test_speed_compile_compiles_the_backbone_and_its_ema_copy_in_place(tmp_path, hydra_cleanup, monkeypatch):
    """The cheap guard of the default run (the outputs are compared in the slow test below): speed.compile=true
    compiles both networks in place, so the state dict and the checkpoints keep their keys."""
    plain = build_module(compose_config("train", [], tmp_path), DataFacts(shape=(1, 8, 8), num_classes=10))
    modes, real_compile = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: modes.append(kwargs.get("mode")) or real_compile(fn))
    module = build_module(compose_config("train", ["speed.compile=true", "speed.compile_mode=reduce-overhead"],
                                         tmp_path), DataFacts(shape=(1, 8, 8), num_classes=10))
    assert modes == ["reduce-overhead", "reduce-overhead"]
    assert module.backbone._compiled_call_impl is not None and module.ema.shadow._compiled_call_impl is not None
    assert plain.backbone._compiled_call_impl is None
    assert list(module.state_dict()) == list(plain.state_dict())


@pytest.mark.slow
def test_compile_keeps_the_state_dict_and_the_outputs():
    """torch.compile (inductor on the CPU) of the backbone and its EMA copy: the same parameter names (checkpoints
    unchanged) and the same outputs as the eager network, for training and for sampling."""
    eager, compiled = module_of(tiny_unet()), module_of(tiny_unet(), compile=True)
    randomise(eager.backbone, 0)
    for m in (compiled.backbone, compiled.ema.shadow, eager.ema.shadow):
        m.load_state_dict(eager.backbone.state_dict())
    assert compiled.backbone._compiled_call_impl is not None and compiled.ema.shadow._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    losses = [m._loss([x0], torch.Generator().manual_seed(3)) for m in (eager, compiled)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-6)
    sampler = make_sampler("ddim", schedule=eager.schedule, steps=3)
    a, b = (m.sample(sampler, 4, seed=1) for m in (eager, compiled))
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
