"""Sampling throughput of difflab's DDIM sampler against diffusers' ``DDIMPipeline``, with the same network weights.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sampling_throughput.py                 # small, 16x16, B=64, 10 steps
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/sampling_throughput.py --threads 2 --repeats 21
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sampling_throughput.py --size ddpm --batch 16 --steps 10

Networks: difflab's ``UNet`` for ``--size`` (see benchmarks/peers.py) and the diffusers ``UNet2DModel`` of the same
architecture, with the SAME weights: difflab's init (with the zero-initialised output layers re-drawn with PyTorch's
default init, so the network output is not identically 0), copied tensor by tensor into the diffusers network. The
script checks that both compute the same function (one forward pass) before timing.

Contenders, each timed from start noise to images in [0, 1] under ``torch.inference_mode``:
  difflab    ``make_sampler("ddim", schedule=linear, steps=S, eta=0, timestep_spacing=...)``: x_T = randn(generator),
             ``sampler.sample(model_fn, x_T, "eps")``, then (x / 2 + 0.5).clamp(0, 1).
  diffusers  ``DDIMPipeline(unet, DDIMScheduler(linear betas 1e-4..0.02, clip_sample=False, set_alpha_to_one=True,
             timestep_spacing=...))(batch_size=B, generator=..., eta=0, num_inference_steps=S, output_type="pt")``,
             the pipeline as users call it, with its progress bar disabled and ``output_type="pt"`` (no PIL/numpy
             conversion; it ends with the same (x / 2 + 0.5).clamp(0, 1)).
An untimed warm-up call of each counts the model evaluations (forward hooks on both networks) and records their
timesteps, and compares the two batches of samples drawn from the same start noise. Timed calls are interleaved
A, B, B, A, A, B, ... (the order flips each repeat, so slow drift of the machine hits both alike); the table
reports the median. Model-evaluation throughput is images x NFE / second: the number of single-image network
evaluations per second. The ratio is difflab's median time / diffusers' (lower is better for difflab).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from peers import (  # benchmarks/peers.py (it names the extra when the peer libraries are missing)
    NUM_TRAIN_TIMESTEPS,
    SIZES,
    DDIMPipeline,
    DDIMScheduler,
    count_parameters,
    difflab_unet,
    diffusers_unet,
    load_difflab_weights,
)
from torch import Tensor, nn

from difflab.diffusion import make_schedule
from difflab.samplers import make_sampler

BETA_START, BETA_END = 1e-4, 0.02  # conf/schedule/linear.yaml: Ho et al. 2020


def build_networks(size: str, image_size: int, device: torch.device, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """difflab's U-Net and diffusers' UNet2DModel of the same architecture holding the same weights, in eval mode."""
    torch.manual_seed(seed)
    ours = difflab_unet(image_size, size)
    for m in ours.modules():  # re-draw the zero-initialised layers too: a network that outputs 0 is too easy a case
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()
    theirs = diffusers_unet(image_size, size)
    load_difflab_weights(theirs, ours)
    ours, theirs = ours.to(device).eval(), theirs.to(device).eval()  # eval: no dropout (ddpm size has 0.1)
    x = torch.randn(2, ours.in_channels, image_size, image_size, device=device)
    t = torch.tensor([10, 900], device=device)
    with torch.inference_mode():
        diff = (ours(x, t) - theirs(x, t, return_dict=False)[0]).abs().max().item()
    if diff > 1e-3:
        raise RuntimeError(f"difflab and diffusers networks disagree after the weight copy: max |diff| = {diff:.3g}")
    print(f"same weights: one forward pass of both networks agrees to max |diff| = {diff:.2g}")
    return ours, theirs


class DifflabDDIM:
    """difflab's DDIM sampler (eta 0) over the linear DDPM schedule, from start noise to images in [0, 1]."""

    label = "difflab"
    path = "make_sampler('ddim').sample"

    def __init__(self, net: nn.Module, batch: int, steps: int, spacing: str) -> None:
        self.net = net
        schedule = make_schedule("linear", num_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END)
        self.sampler = make_sampler(
            "ddim", schedule=schedule, steps=steps, eta=0.0, timestep_spacing=spacing, clip_sample=False
        )
        self.shape = (batch, net.in_channels, net.image_size, net.image_size)
        self.device = next(net.parameters()).device

    def __call__(self, generator: torch.Generator) -> Tensor:
        with torch.inference_mode():
            x_T = torch.randn(self.shape, generator=generator, device=self.device)
            x = self.sampler.sample(lambda x, t: self.net(x, t), x_T, "eps")
            return (x / 2 + 0.5).clamp(0, 1)


class DiffusersDDIM:
    """diffusers' ``DDIMPipeline`` (eta 0) with a linear-beta ``DDIMScheduler``, returning a tensor in [0, 1]."""

    label = "diffusers"
    path = "DDIMPipeline(...)(output_type='pt')"

    def __init__(self, net: nn.Module, batch: int, steps: int, spacing: str) -> None:
        scheduler = DDIMScheduler(
            num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END, beta_schedule="linear",
            clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon",
            timestep_spacing=spacing,
        )
        self.pipe = DDIMPipeline(unet=net, scheduler=scheduler)
        self.pipe.set_progress_bar_config(disable=True)
        self.batch, self.steps = batch, steps

    def __call__(self, generator: torch.Generator) -> Tensor:
        with torch.inference_mode():
            out = self.pipe(
                batch_size=self.batch, generator=generator, eta=0.0, num_inference_steps=self.steps, output_type="pt"
            )
            return out.images


def record_calls(net: nn.Module, run: Callable[[], Tensor]) -> tuple[Tensor, list[int]]:
    """Run ``run()`` with a forward hook on ``net``; return its output and the timestep of every network call."""
    timesteps: list[int] = []

    def hook(_module: nn.Module, args: tuple) -> None:
        timesteps.append(int(torch.as_tensor(args[1]).flatten()[0]))

    handle = net.register_forward_pre_hook(hook)
    try:
        out = run()
    finally:
        handle.remove()
    return out, timesteps


def timed(fn: Callable[[torch.Generator], Tensor], seed: int, device: torch.device) -> float:
    """Seconds for one call of ``fn`` (synchronising a CUDA device before reading the clock)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn(generator)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="small: 16x16x1; ddpm: 32x32x3")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps (model evaluations per sample)")
    parser.add_argument("--repeats", type=int, default=11, help="timed calls of each contender (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (set OMP_NUM_THREADS too)")
    parser.add_argument("--spacing", choices=["leading", "linspace", "trailing"], default="trailing")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    image_size = SIZES[args.size]["image_size"]
    ours, theirs = build_networks(args.size, image_size, device)
    contenders = [
        (DifflabDDIM(ours, args.batch, args.steps, args.spacing), ours),
        (DiffusersDDIM(theirs, args.batch, args.steps, args.spacing), theirs),
    ]

    # Warm-up (untimed): count model evaluations, record their timesteps, compare the samples from the same noise.
    outputs, calls = [], []
    for fn, net in contenders:
        out, ts = record_calls(net, lambda: fn(torch.Generator(device=device).manual_seed(1234)))
        outputs.append(out)
        calls.append(ts)
    nfe = [len(ts) for ts in calls]
    same_nfe = nfe[0] == nfe[1]
    print(f"model evaluations per batch: difflab {nfe[0]}, diffusers {nfe[1]} -> {'same' if same_nfe else 'DIFFERENT'}"
          f"; timesteps {'identical' if calls[0] == calls[1] else 'DIFFER'}: {calls[0]}")
    print(f"samples from the same start noise: max |difflab - diffusers| = "
          f"{(outputs[0] - outputs[1]).abs().max().item():.2g} (images in [0, 1])")
    if not same_nfe:
        print("WARNING: the contenders evaluate the network a different number of times; compare img*NFE/s only")

    times: list[list[float]] = [[] for _ in contenders]
    for r in range(args.repeats):
        order = range(len(contenders)) if r % 2 == 0 else reversed(range(len(contenders)))
        for i in order:
            times[i].append(timed(contenders[i][0], seed=r, device=device))

    print(f"\nDDIM sampling, size={args.size} ({image_size}x{image_size}x{SIZES[args.size]['channels']}), "
          f"batch={args.batch}, steps={args.steps} (eta 0, {args.spacing} spacing), threads={args.threads}, "
          f"device={device.type}, {args.repeats} interleaved repeats")
    header = (f"{'contender':<10} {'path':<36} {'params':>11} {'s/batch median':>15} {'(min - max)':>17} "
              f"{'images/s':>9} {'img*NFE/s':>10}")
    print(header)
    print("-" * len(header))
    medians = []
    for (fn, net), ts, n in zip(contenders, times, nfe):
        med = statistics.median(ts)
        medians.append(med)
        print(f"{fn.label:<10} {fn.path:<36} {count_parameters(net):>11,} {med:>15.4f} "
              f"{f'({min(ts):.4f} - {max(ts):.4f})':>17} {args.batch / med:>9.1f} {args.batch * n / med:>10.1f}")
    print(f"\ntime ratio difflab / diffusers (median s/batch; lower is better for difflab): "
          f"{medians[0] / medians[1]:.3f}")
    print("img*NFE/s = images x model evaluations per image / second (single-image network evaluations per second)")


if __name__ == "__main__":
    main()
