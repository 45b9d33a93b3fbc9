"""One DDPM training step of difflab against its peers, interleaved in one process, reported as ratios.

    .venv/bin/python benchmarks/training_step.py                                   # 16x16, batch 64, 1.11M U-Net
    .venv/bin/python benchmarks/training_step.py --size ddpm --batch 16 --steps 2  # 32x32, the 35.7M DDPM U-Net
    .venv/bin/python benchmarks/training_step.py --bf16                            # + bf16 autocast rows
    .venv/bin/python benchmarks/training_step.py --profile                         # + time in convolutions

Every contender does its own library's step on the same batch: t and noise, the noised x, an eps prediction, MSE,
backward, gradient clipping to norm 1, AdamW, an EMA update (benchmarks/peers.py describes the peers'). difflab's
step is its DiffusionModule's (the loss of ``training_step``, ``configure_gradient_clipping``, the optimizer and LR
schedule of ``configure_optimizers``, the EMA update of ``optimizer_step``) built from the config tree, once with
the defaults and once per fast path (``speed.channels_last``, ``optim.optimizer.fused``, ``speed.compile``) and
with all of them. The peers run eagerly, as their libraries' training loops do. Each round runs every contender for
``--steps`` steps, in a rotated order; the table gives the median over ``--repeats`` rounds. torch.compile's
compilation (the first steps) is timed apart from the steps.

``--profile`` then runs each contender's steps once more under torch.profiler and prints the time its convolution
kernels take (forward and backward, the self time of the ops that run them) and their share of its step. At matched
architecture every contender runs the same convolutions, so difflab's convolution time over the best peer's step is
a floor under the ratio the benchmark reports: the ratio a difflab step would have if it spent nothing outside its
convolutions.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from hydra import compose, initialize_config_dir
from peers import SIZES, DDPMPytorchStep, DiffusersStep, count_parameters, ddpm_pytorch_unet, diffusers_unet

from difflab.builders import build_module
from difflab.configs import CONFIG_DIR
from difflab.data import DataFacts
from difflab.module import DiffusionModule

BACKBONE = {"small": ["backbone=unet_small", "backbone.dropout=0.0"], "ddpm": ["backbone=unet_ddpm_cifar10"]}
FAST = {
    "defaults": [],
    "channels_last": ["speed.channels_last=true"],
    "fused AdamW": ["optim.optimizer.fused=true"],
    "compile": ["speed.compile=true"],
    "all fast paths": ["speed.compile=true", "speed.channels_last=true", "optim.optimizer.fused=true"],
}


def difflab_module(size: str, overrides: list[str]) -> DiffusionModule:
    """difflab's DiffusionModule of ``size`` from the config tree with ``overrides`` (lr 2e-4 as the peers)."""
    spec = SIZES[size]
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", [*BACKBONE[size], "optim.optimizer.lr=2e-4", *overrides])
    return build_module(cfg, DataFacts(shape=(spec["channels"], spec["image_size"], spec["image_size"])))


class DifflabStep:
    """DiffusionModule's training step outside Lightning: what ``training_step``, ``configure_gradient_clipping``,
    ``optimizer_step`` (with the EMA) and the LR scheduler do for one optimizer step."""

    def __init__(self, module: DiffusionModule) -> None:
        self.module = module.train()
        configured = module.configure_optimizers()
        self.optimizer, self.scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
        module.log = lambda *args, **kwargs: None  # no trainer to log to
        self.step = 0

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        module = self.module
        torch.manual_seed(self.step)
        loss = module._loss([x0])
        loss.backward()
        module.configure_gradient_clipping(self.optimizer, 1.0, "norm")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        module.ema.update(module.backbone, self.step)
        self.step += 1
        return loss.detach()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int, bf16: bool) -> float:
    """Seconds per step over ``steps`` steps."""
    context = torch.autocast(x0.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    synchronize(x0.device)
    start = time.perf_counter()
    with context:
        for _ in range(steps):
            step(x0)
    synchronize(x0.device)
    return (time.perf_counter() - start) / steps


CONVOLUTION_KERNELS = re.compile(r"mkldnn_convolution|convolution_backward|_convolution_pointwise|slow_conv|thnn_conv"
                                 r"|cudnn_convolution")


def convolution_seconds(step: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int,
                        bf16: bool) -> float:
    """Seconds per step that ``step``'s convolution kernels take (self time, forward and backward), by
    torch.profiler over ``steps`` steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x0.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        timed(step, x0, steps, bf16)
    device_time = "self_device_time_total" if x0.device.type == "cuda" else "self_cpu_time_total"
    micros = sum(getattr(event, device_time) for event in prof.key_averages() if CONVOLUTION_KERNELS.search(event.key))
    return micros / 1e6 / steps


def print_profile(contenders: dict[str, tuple[Callable, int, bool]], median: dict[str, float], best_peer: str | None,
                  x0: torch.Tensor, steps: int) -> None:
    """Each contender's convolution time per step, its share of the step, and the floor it sets on difflab's ratio."""
    conv = {name: convolution_seconds(step, x0, steps, bf16) for name, (step, _, bf16) in contenders.items()}
    print(f"\nconvolution kernels (torch.profiler, {steps} steps each; forward + backward, self time)")
    print(f"{'contender':<36} {'conv ms/step':>12} {'of its step':>12} {'conv / best peer step':>22}")
    for name in contenders:
        floor = f"{conv[name] / median[best_peer]:.3f}" if best_peer else "-"
        print(f"{name:<36} {1000 * conv[name]:>12.1f} {conv[name] / median[name]:>11.0%} {floor:>22}")
    if best_peer:
        print("'conv / best peer step': the ratio to the best peer a contender would have with nothing in its step "
              "but its convolutions.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="steps per contender per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing (after compilation)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="also time difflab's defaults under bf16 autocast")
    parser.add_argument("--only", nargs="*", default=None, help="contender names to run (default: all)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile each contender's convolutions (the floor they set on the ratio)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = SIZES[args.size]
    size = spec["image_size"]
    x0 = (torch.rand(args.batch, spec["channels"], size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    x0 = x0.to(device)

    contenders: dict[str, tuple[Callable, int, bool]] = {}
    for name, overrides in FAST.items():
        module = difflab_module(args.size, overrides).to(device)
        contenders[f"difflab ({name})"] = (DifflabStep(module), count_parameters(module.backbone), False)
    if args.bf16:
        module = difflab_module(args.size, []).to(device)
        contenders["difflab (defaults, bf16 autocast)"] = (DifflabStep(module), count_parameters(module.backbone), True)
    torch.manual_seed(0)
    net = diffusers_unet(size, args.size).to(device)
    contenders["diffusers UNet2DModel"] = (DiffusersStep(net, size), count_parameters(net), False)
    net = ddpm_pytorch_unet(size, args.size).to(device)
    contenders["denoising-diffusion-pytorch Unet"] = (DDPMPytorchStep(net, size), count_parameters(net), False)
    if args.only:
        contenders = {k: v for k, v in contenders.items() if any(o in k for o in args.only)}

    first_step: dict[str, float] = {}
    for name, (step, _, bf16) in contenders.items():  # compilation and warm-up, timed apart
        first_step[name] = timed(step, x0, 1, bf16)
        timed(step, x0, args.warmup, bf16)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step, _, bf16 = contenders[name]
            times[name].append(timed(step, x0, args.steps, bf16))

    median = {name: statistics.median(values) for name, values in times.items()}
    peers = [n for n in median if not n.startswith("difflab")]
    best_peer = min(peers, key=median.get) if peers else None
    print(f"training step, size={args.size} ({spec['channels']}x{size}x{size}), batch {args.batch}, device {device}, "
          f"{args.threads} threads, {args.repeats} rounds x {args.steps} steps (median ms/step)")
    print(f"{'contender':<36} {'params':>11} {'ms/step':>9} {'min-max':>15} {'first step':>11} {'/ best peer':>11}")
    for name, (_, params, _) in contenders.items():
        ratio = f"{median[name] / median[best_peer]:.3f}" if best_peer else "-"
        print(f"{name:<36} {params:>11,} {1000 * median[name]:>9.1f} "
              f"{1000 * min(times[name]):>7.1f}-{1000 * max(times[name]):<7.1f} {first_step[name]:>10.1f}s {ratio:>11}")
    if best_peer:
        print(f"best peer: {best_peer}. 'first step' includes torch.compile's compilation where it is on.")
    if args.profile:
        print_profile(contenders, median, best_peer, x0, args.steps)


if __name__ == "__main__":
    main()
