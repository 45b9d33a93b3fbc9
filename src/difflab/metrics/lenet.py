"""LeNet-style classifiers whose penultimate activations are the FID features of small grayscale datasets.

The Inception network of FID was trained on ImageNet photographs; on 8x8 digits or 28x28 MNIST its features
say little. The literature's answer (e.g. the "LeNet FID" used for MNIST) is a small classifier trained on
the dataset itself. The weights live in ``difflab/metrics/weights/<name>.pt`` beside a JSON record of their
test accuracy and the command that rebuilt them (:mod:`difflab.metrics.train_extractor`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["LeNetFeatures", "WEIGHTS_DIR", "load_lenet", "lenet_record"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class LeNetFeatures(nn.Module):
    """conv-conv-pool-conv-pool, then two fully connected layers; ``forward`` returns the penultimate layer.

    Inputs are images in [-1, 1] of shape [B, channels, image_size, image_size] (image_size divisible by 4).
    ``logits(x)`` gives the class scores; ``num_features`` is the feature dimension (read by torchmetrics).
    """

    def __init__(self, channels: int = 1, image_size: int = 8, num_classes: int = 10, num_features: int = 84) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"LeNetFeatures: image_size={image_size} must be divisible by 4")
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.num_features = num_features
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.hidden = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * (image_size // 4) ** 2, 128), nn.ReLU(),
            nn.Linear(128, num_features), nn.ReLU(),
        )
        self.head = nn.Linear(num_features, num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the expected shape when ``x`` does not fit this network."""
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"LeNet features expect images of shape [B, {', '.join(map(str, expected))}], got {list(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, [B, num_features] (float32)."""
        self.check_input(x)
        return self.hidden(self.conv(x.float()))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores, [B, num_classes]."""
        return self.head(self.forward(x))


def lenet_record(name: str) -> dict[str, Any]:
    """The JSON record shipped beside weights ``name`` (architecture, accuracy, command, sha256)."""
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        available = sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))
        dataset = name.removesuffix("_lenet")
        raise FileNotFoundError(
            f"no feature extractor weights named {name!r} in {WEIGHTS_DIR}; available: {available}; "
            f"build them from the dataset files with: python -m difflab.metrics.train_extractor {dataset} --root <dir>"
        )
    return json.loads(path.read_text())


def load_lenet(name: str, weights_path: str | Path | None = None) -> LeNetFeatures:
    """The shipped extractor ``name`` (e.g. ``"digits_lenet"``) in eval mode, loaded with ``weights_only=True``."""
    record = lenet_record(name)
    path = Path(weights_path) if weights_path is not None else WEIGHTS_DIR / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"feature extractor weights {path} not found (rebuild: {record['command']})")
    model = LeNetFeatures(**record["architecture"])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)
