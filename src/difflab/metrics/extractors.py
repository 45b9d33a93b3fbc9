"""Feature extractors for FID/KID/IS/precision-recall, chosen by name: ``digits``, ``mnist``, ``fashion_mnist``,
``inception``.

Every extractor takes images in [-1, 1] of shape [B, C, H, W] and returns float features [B, num_features];
``logits(x)`` gives class scores (for the Inception Score) and ``metric_name`` goes into metric names.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from difflab.metrics.lenet import WEIGHTS_DIR, LeNetFeatures, lenet_record, load_lenet
from difflab.metrics.naming import LENET_EXTRACTORS, extractor_label
from difflab.utils.files import file_sha256, load_error

__all__ = ["FeatureExtractor", "InceptionFeatures", "LeNetExtractor", "build_feature_extractor",
           "inception_weights_path", "INCEPTION_URL", "INCEPTION_FILE"]

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[-1]


class FeatureExtractor(nn.Module):
    """Base: ``forward`` -> features, ``logits`` -> class scores; never leaves eval mode."""

    metric_name: str
    num_features: int
    weights_sha256: str
    channels: tuple[int, ...]  # the image channel counts it accepts

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)

    def check_channels(self, channels: int | None) -> None:
        """Raise a ValueError when images with ``channels`` channels (None: not images) cannot be scored."""
        if channels not in self.channels:
            kind = "2-D points" if channels is None else f"{channels}-channel images"
            raise ValueError(
                f"features={self.metric_name} scores {' or '.join(map(str, self.channels))}-channel images, "
                f"but the dataset gives {kind}; "
                "choose features that fit the data (or metrics=[] / metrics=[two_d] for 2-D data)"
            )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LeNetExtractor(FeatureExtractor):
    """A shipped :class:`LeNetFeatures` classifier (``<dataset>_lenet``); its penultimate layer is the feature."""

    def __init__(self, dataset: str, weights_path: str | None = None) -> None:
        super().__init__()
        record = lenet_record(f"{dataset}_lenet")
        try:
            self.net: LeNetFeatures = load_lenet(f"{dataset}_lenet", weights_path)
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - a user's file (or a damaged install): one line naming it
            where = (f"features.weights_path={weights_path!r}" if weights_path
                     else f"the shipped weights {WEIGHTS_DIR / f'{dataset}_lenet.pt'}")
            raise ValueError(f"{where} is not a loadable {dataset} LeNet state dict ({load_error(err)})") from None
        self.metric_name = extractor_label(dataset)
        self.num_features = self.net.num_features
        self.weights_sha256 = record["sha256"] if weights_path is None else file_sha256(Path(weights_path))
        self.test_accuracy = float(record["test_accuracy"])
        self.channels = (self.net.channels,)

    def fit_size(self, x: torch.Tensor) -> torch.Tensor:
        """Images of another size are resized to the network's (area-averaged down, bilinear up), as FID's
        Inception resizes everything to 299x299: real and generated images go through the same path."""
        size = self.net.image_size
        if x.dim() != 4 or x.shape[-2:] == (size, size):
            return x
        down = x.shape[-1] > size
        return F.interpolate(x.float(), size=(size, size), mode="area" if down else "bilinear",
                             align_corners=None if down else False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.fit_size(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.logits(self.fit_size(x))


def inception_weights_path(weights_path: str | None = None) -> Path:
    """The Inception-v3 weights file: ``weights_path`` or ``$TORCH_HOME/hub/checkpoints/<INCEPTION_FILE>``.

    Raises FileNotFoundError naming the file, where it comes from and the config key when it is absent
    (nothing is ever downloaded here, and there is no fallback to another extractor).
    """
    path = (Path(weights_path).expanduser() if weights_path
            else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"features=inception needs the Inception-v3 weights {INCEPTION_FILE} but {path} does not exist; "
            f"download it from {INCEPTION_URL} into {Path(torch.hub.get_dir()) / 'checkpoints'} "
            f"(or $TORCH_HOME/hub/checkpoints) or set features.weights_path=/path/to/{INCEPTION_FILE}"
        )
    return path


class InceptionFeatures(FeatureExtractor):
    """torch-fidelity's Inception-v3 (the TF-FID port): 2048-d pool features and its 1008-way logits.

    Images in [-1, 1] are mapped to uint8 [0, 255] (grayscale repeated to RGB) and resized inside the
    network to 299x299 with torch-fidelity's TF-1.x-compatible bilinear interpolation, as in the reference FID.
    The file is first loaded with ``weights_only=True``: a file that holds anything but tensors is refused.
    """

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = inception_weights_path(weights_path)
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure means the file is not a plain state dict
            raise ValueError(f"features.weights_path={str(path)!r} is not a loadable Inception-v3 state dict "
                             f"({load_error(err)})") from None
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                               feature_extractor_weights_path=str(path))
        self.metric_name = extractor_label("inception")
        self.num_features = 2048
        self.channels = (1, 3)
        self.weights_sha256 = file_sha256(path)

    @staticmethod
    def to_uint8(x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] float images -> uint8 RGB [B, 3, H, W]."""
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[1] != 3:
            raise ValueError(f"inception features need 1- or 3-channel images, got {x.shape[1]} channels")
        return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.to_uint8(x))[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.to_uint8(x))[1]


def build_feature_extractor(name: str, weights_path: str | None = None) -> FeatureExtractor:
    """The extractor called ``name`` (``digits``, ``mnist``, ``fashion_mnist``: shipped LeNets; ``inception``)."""
    if name == "inception":
        return InceptionFeatures(weights_path)
    if name in LENET_EXTRACTORS:
        return LeNetExtractor(name, weights_path)
    raise ValueError(f"features.name={name!r} is not known; choose one of {[*LENET_EXTRACTORS, 'inception']}")


