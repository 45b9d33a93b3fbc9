"""Can the training loader keep the model fed? Samples/s of the training loader alone next to samples/s of a
training step (forward + backward + optimizer step) of the U-Net, for one dataset.

    .venv/bin/python benchmarks/loader_throughput.py cifar10 --fake                  # tiny CIFAR-10 files in a temp dir
    .venv/bin/python benchmarks/loader_throughput.py mnist --root data --num-workers 4 --pin-memory
    .venv/bin/python benchmarks/loader_throughput.py image_folder --root /path/to/images -- backbone=unet_ddpm_cifar10

Arguments after ``--`` are Hydra overrides of ``difflab-train``'s config (e.g. ``trainer=gpu`` for a GPU, or
another ``backbone=``). The loader is fast enough when its samples/s is well above the step's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from difflab.builders import build_datamodule, build_module
from difflab.configs import CONFIG_DIR
from difflab.data.fake_files import write_fake

DATASETS = ("mnist", "fashion_mnist", "cifar10", "image_folder")


def loader_rate(datamodule, steps: int) -> float:
    """Samples/s of ``steps`` training batches (after one warm-up batch, which starts any workers)."""
    batches = iter(datamodule.train_dataloader())
    next(batches)
    start = time.perf_counter()
    count = sum(len(next(batches)[0]) for _ in range(steps))
    return count / (time.perf_counter() - start)


def step_rate(module, make_optimizer, batch: list[torch.Tensor], steps: int, device: torch.device) -> float:
    """Samples/s of forward + backward + optimizer step on one fixed batch (after one warm-up step)."""
    module.to(device).train()
    optimizer = make_optimizer(params=module.backbone.parameters())
    batch = [t.to(device) for t in batch]

    def one_step() -> None:
        loss = module._loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(batch[0]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=DATASETS)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", help="dataset.root: where the dataset files are")
    source.add_argument("--fake", action="store_true",
                        help="write tiny files in the real format to a temp dir and use those")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--pin-memory", action="store_true")
    parser.add_argument("--loader-steps", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--backbone", default="unet_small",
                        help="the backbone config (default unet_small: 32x32 images)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the training config (after --)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = write_fake(args.dataset, Path(tmp)) if args.fake else Path(args.root)
        overrides = [
            f"dataset={args.dataset}", f"dataset.root={root}", f"dataset.batch_size={args.batch_size}",
            f"dataset.num_workers={args.num_workers}", f"dataset.pin_memory={str(args.pin_memory).lower()}",
            f"backbone={args.backbone}", "metrics=[]",
            *(["dataset.verify_md5=false"] if args.fake and args.dataset == "cifar10" else []),
            *args.overrides,
        ]
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = compose(config_name="train", overrides=overrides)
        torch.manual_seed(cfg.seed)
        datamodule = build_datamodule(cfg)
        module = build_module(cfg, datamodule)
        device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" and torch.cuda.is_available() else "cpu")
        loader = loader_rate(datamodule, args.loader_steps)
        batch = next(iter(datamodule.train_dataloader()))
        train = step_rate(module, instantiate(cfg.optim.optimizer), batch, args.train_steps, device)
        params = sum(p.numel() for p in module.backbone.parameters()) / 1e6
        print(f"dataset={args.dataset} root={'<temp fake files>' if args.fake else root} batch_size={args.batch_size} "
              f"num_workers={args.num_workers} pin_memory={args.pin_memory} "
              f"images={len(datamodule.train_dataset)}x{list(datamodule.data_shape)}")
        print(f"loader alone:   {loader:10.1f} samples/s")
        print(f"training step:  {train:10.1f} samples/s  (backbone={args.backbone}, {params:.1f}M parameters, "
              f"{device.type}, {torch.get_num_threads()} threads)")
        print(f"loader / step:  {loader / train:10.1f}x  "
              f"({'the loader keeps up' if loader > 2 * train else 'the loader may starve the model'})")


if __name__ == "__main__":
    main()
