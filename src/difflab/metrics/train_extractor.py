"""Train the LeNet feature extractor of a dataset and write ``weights/<dataset>_lenet.pt`` plus its record.

    python -m difflab.metrics.train_extractor digits            # about 20 s on 2 CPU cores
    python -m difflab.metrics.train_extractor mnist --root data # needs the MNIST files (see README)

The network trains on the dataset's training split only; the accuracy recorded is on its held-out split
(digits: the fixed 360 images of ``DigitsDataModule``; MNIST/Fashion-MNIST: the 10,000 test images).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from difflab.metrics.lenet import WEIGHTS_DIR, LeNetFeatures
from difflab.utils.files import file_sha256

__all__ = ["train_lenet", "accuracy", "write_extractor", "main"]

RECIPE = {"epochs": 60, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-4, "max_shift": 1, "seed": 0}


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (background -1 fills the border)."""
    if max_shift == 0:
        return x
    size = x.shape[-1]
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(x), 2), generator=generator)
    return torch.stack([padded[i, :, a:a + size, b:b + size] for i, (a, b) in enumerate(offsets.tolist())])


def train_lenet(x: torch.Tensor, y: torch.Tensor, num_classes: int, recipe: dict[str, Any] = RECIPE) -> LeNetFeatures:
    """Fit a :class:`LeNetFeatures` classifier on images ``x`` in [-1, 1] and labels ``y`` (seeded)."""
    torch.manual_seed(recipe["seed"])
    generator = torch.Generator().manual_seed(recipe["seed"])
    model = LeNetFeatures(channels=x.shape[1], image_size=x.shape[-1], num_classes=num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    steps_per_epoch = -(-len(x) // recipe["batch_size"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe["lr"],
                                                    total_steps=recipe["epochs"] * steps_per_epoch)
    model.train()
    for _ in range(recipe["epochs"]):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), recipe["batch_size"]):
            idx = order[start:start + recipe["batch_size"]]
            loss = F.cross_entropy(model.logits(random_shift(x[idx], recipe["max_shift"], generator)), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def accuracy(model: LeNetFeatures, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` whose predicted class equals ``y``."""
    correct = sum(int((model.logits(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def write_extractor(model: LeNetFeatures, name: str, record: dict[str, Any], directory: Path = WEIGHTS_DIR) -> Path:
    """Save ``<name>.pt`` (state dict) and ``<name>.json`` (record + sha256 of the weights) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pt"
    torch.save(model.state_dict(), path)
    record = {**record, "sha256": file_sha256(path)}
    (directory / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_splits(dataset: str, root: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(x_train, y_train, x_test, y_test, num_classes) of a labelled dataset, images in [-1, 1]."""
    if dataset == "digits":
        from difflab.data import DigitsDataModule
        dm = DigitsDataModule()
    else:
        from difflab import data
        classes = {"mnist": "MNISTDataModule", "fashion_mnist": "FashionMNISTDataModule"}
        if dataset not in classes or not hasattr(data, classes[dataset]):
            raise SystemExit(f"train_extractor: dataset={dataset!r} is not supported; "
                             "choose one of digits, mnist, fashion_mnist")
        dm = getattr(data, classes[dataset])(root=root or "data", download=False, hflip=False)
    dm.setup()
    (x_tr, y_tr), (x_te, y_te) = dm.train_dataset.tensors, dm.val_dataset.tensors
    return x_tr, y_tr, x_te, y_te, dm.num_classes


def main(argv: list[str] | None = None) -> None:
    """``python -m difflab.metrics.train_extractor <dataset> [--root DIR]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        raise SystemExit("usage: python -m difflab.metrics.train_extractor {digits,mnist,fashion_mnist} [--root DIR]")
    dataset, root = args[0], (args[args.index("--root") + 1] if "--root" in args else None)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    x_tr, y_tr, x_te, y_te, num_classes = load_splits(dataset, root)
    model = train_lenet(x_tr, y_tr, num_classes)
    record = {
        "name": f"{dataset}_lenet",
        "dataset": dataset,
        "architecture": {"channels": model.channels, "image_size": model.image_size, "num_classes": num_classes,
                         "num_features": model.num_features},
        "train_images": len(x_tr),
        "test_images": len(x_te),
        "train_accuracy": accuracy(model, x_tr, y_tr),
        "test_accuracy": accuracy(model, x_te, y_te),
        "recipe": RECIPE,
        "command": f"python -m difflab.metrics.train_extractor {' '.join(args)}",
        "torch": torch.__version__,
    }
    path = write_extractor(model, record["name"], record)
    print(json.dumps({k: record[k] for k in ("name", "train_accuracy", "test_accuracy")}), "->", path)


if __name__ == "__main__":
    main()
