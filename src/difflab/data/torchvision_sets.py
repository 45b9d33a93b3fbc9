"""MNIST, Fashion-MNIST and CIFAR-10 read by torchvision's dataset classes from ``root``, held as uint8 in memory.

The files are checked in the constructor, so a missing dataset stops a run before any training. With
``download=true`` and files missing, the download host is first probed with a plain TCP connect (3 s): without
a network the run stops at once with the directory, the files expected and how to get them (torchvision's
own download would wait for a long time before failing).
"""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import datasets as tv
from torchvision.datasets.utils import check_integrity

from difflab.data.images import ImageDataModule
from difflab.utils.checks import check_int

__all__ = ["MNISTDataModule", "FashionMNISTDataModule", "CIFAR10DataModule", "DOWNLOAD_HOSTS", "PROBE_TIMEOUT",
           "host_reachable"]

PROBE_TIMEOUT = 3.0  # seconds for the TCP connect that tells whether a download can work at all

# (host, port) probed before a download; tests point these at a closed local port.
DOWNLOAD_HOSTS: dict[str, tuple[str, int]] = {
    "mnist": ("ossci-datasets.s3.amazonaws.com", 443),
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    "cifar10": (urlsplit(tv.CIFAR10.url).hostname or "www.cs.toronto.edu", 443),
}


def host_reachable(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class _CIFAR10(tv.CIFAR10):
    """torchvision's CIFAR10 with the md5 check of every file optional (``verify_md5=False``: present is enough)."""

    def __init__(self, root: str, train: bool, verify_md5: bool = True, download: bool = False) -> None:
        self.verify_md5 = verify_md5
        super().__init__(root, train=train, download=download)

    def _check_integrity(self) -> bool:
        folder = os.path.join(self.root, self.base_folder)
        files = self.train_list + self.test_list + [[self.meta["filename"], self.meta["md5"]]]
        return all(check_integrity(os.path.join(folder, name), md5 if self.verify_md5 else None) for name, md5 in files)

    def _load_meta(self) -> None:
        if self.verify_md5:
            return super()._load_meta()
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as handle:
            self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _TorchvisionDataModule(ImageDataModule):
    """Common part: ``root``/``download`` handling, torchvision's train/test split (test -> val), 10 classes.
    Subclasses set ``channels`` and ``image_size`` (a class attribute, or chosen in their constructor)."""

    file_note = ""  # how the files come, added to the error for missing files
    num_classes = 10

    def __init__(self, root: str = "data", download: bool = True, hflip: bool = False, **kwargs: Any) -> None:
        """``kwargs`` go to :class:`ImageDataModule` (batch_size, num_workers, seed, hflip, ...)."""
        super().__init__(hflip=hflip, **kwargs)
        if not isinstance(download, bool):
            raise ValueError(f"dataset.download={download!r} must be true or false")
        if not root or not isinstance(root, (str, os.PathLike)):
            raise ValueError(f"dataset.root={root!r} must be a directory path")
        self.root = Path(root).expanduser()
        self.download = download
        self.ensure_files()

    # -- files -----------------------------------------------------------------------------------------------
    def folder(self) -> Path:
        """The directory torchvision reads the files from."""
        raise NotImplementedError

    def expected_files(self) -> list[str]:
        raise NotImplementedError

    def problems(self) -> list[str]:
        """Missing (or damaged) files, empty when the dataset is ready to load."""
        return [name for name in self.expected_files() if not (self.folder() / name).is_file()]

    def ensure_files(self) -> None:
        """Raise FileNotFoundError naming the directory and files unless the dataset can be read (downloading
        it first when ``download`` and the download host answers)."""
        missing = self.problems()
        if not missing:
            return
        how = (
            f"run once with dataset.download=true on a machine with a network (dataset.root={self.root}), "
            f"or copy the files into {self.folder()}"
        )
        if self.download:
            host, port = DOWNLOAD_HOSTS[self.name]
            if not host_reachable(host, port):
                raise FileNotFoundError(
                    f"dataset={self.name}: {self.folder()} lacks {', '.join(missing)} "
                    f"and the download host {host}:{port} cannot be reached (no network?); {how}"
                )
            try:
                self.fetch()
            except Exception as err:  # noqa: BLE001 - any download failure ends in the same clear message
                raise FileNotFoundError(
                    f"dataset={self.name}: downloading into {self.root} failed ({err}); {how}") from None
            missing = self.problems()
            if not missing:
                return
        expected = self.expected_files()
        what = f"has none of the expected files {', '.join(expected)}" if len(missing) == len(expected) else (
            f"lacks {', '.join(missing)} (expected files: {', '.join(expected)})"
        )
        raise FileNotFoundError(f"dataset={self.name}: {self.folder()} {what}{self.file_note}; {how}")

    def fetch(self) -> None:
        """Download (and unpack) the files with torchvision."""
        raise NotImplementedError

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, s, s] at the native size -> uint8 [N, C, S, S] at ``image_size`` (identity by default)."""
        return images


class MNISTDataModule(_TorchvisionDataModule):
    """MNIST (``torchvision.datasets.MNIST``): 60,000 train / 10,000 test (val) 28x28 grayscale digits, label = digit.

    Files: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (torchvision's layout; the IDX files
    as unpacked from the .gz archives). ``image_size`` > 28 pads with background (-1) around the centred digit,
    32 (the default) for U-Nets that halve the resolution three times; the pixel values stay the 256 original levels.
    """

    name = "mnist"
    channels = 1
    native_size = 28
    file_note = " (the IDX files unpacked from the .gz archives)"
    torchvision_class: type[tv.MNIST] = tv.MNIST

    def __init__(self, image_size: int = 32, **kwargs: Any) -> None:
        """``image_size`` >= 28 (checked before any file is read); ``kwargs`` go to the common part (root, download,
        ...)."""
        self.image_size = check_int("dataset.image_size", image_size, self.native_size,
                                    note=f"larger sizes pad the {self.native_size}x{self.native_size} {self.name} "
                                         "images with background")
        super().__init__(**kwargs)

    def folder(self) -> Path:
        return self.root / self.torchvision_class.__name__ / "raw"

    def expected_files(self) -> list[str]:
        return [os.path.splitext(name)[0] for name, _ in self.torchvision_class.resources]

    def fetch(self) -> None:
        self.torchvision_class(str(self.root), train=True, download=True)

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        splits = []
        for train in (True, False):
            data = self.torchvision_class(str(self.root), train=train, download=False)
            splits.append((self.resize(data.data.unsqueeze(1)), torch.as_tensor(data.targets, dtype=torch.long)))
        return splits[0], splits[1]

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        pad = self.image_size - self.native_size
        if pad == 0:
            return images.contiguous()
        return F.pad(images, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=0).contiguous()


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (``torchvision.datasets.FashionMNIST``): MNIST's format and sizes, 10 clothing classes.

    Files: ``<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``.
    """

    name = "fashion_mnist"
    torchvision_class = tv.FashionMNIST


class CIFAR10DataModule(_TorchvisionDataModule):
    """CIFAR-10 (``torchvision.datasets.CIFAR10``): 50,000 train / 10,000 test (val) 32x32 RGB images, 10 classes.

    Files: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (the python pickles of the
    official archive). ``verify_md5`` (default true) checks each file against torchvision's md5 sums; false
    accepts any files of that format (e.g. a subset written by hand).
    """

    name = "cifar10"
    channels = 3
    image_size = 32
    file_note = " (unpacked from cifar-10-python.tar.gz)"

    def __init__(self, verify_md5: bool = True, **kwargs: Any) -> None:
        if not isinstance(verify_md5, bool):
            raise ValueError(f"dataset.verify_md5={verify_md5!r} must be true or false")
        self.verify_md5 = verify_md5
        super().__init__(**kwargs)

    def folder(self) -> Path:
        return self.root / tv.CIFAR10.base_folder

    def expected_files(self) -> list[str]:
        return [name for name, _ in tv.CIFAR10.train_list + tv.CIFAR10.test_list] + [tv.CIFAR10.meta["filename"]]

    def ensure_files(self) -> None:
        super().ensure_files()
        if self.verify_md5:
            sums = dict(tv.CIFAR10.train_list + tv.CIFAR10.test_list)
            sums[tv.CIFAR10.meta["filename"]] = tv.CIFAR10.meta["md5"]
            bad = [name for name, md5 in sums.items() if not check_integrity(str(self.folder() / name), md5)]
            if bad:
                raise ValueError(
                    f"dataset=cifar10: {', '.join(str(self.folder() / b) for b in bad)} do not match torchvision's md5 "
                    "sums of CIFAR-10; delete them and download again, "
                    "or set dataset.verify_md5=false to use them as they are"
                )

    def fetch(self) -> None:
        _CIFAR10(str(self.root), train=True, verify_md5=True, download=True)

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        splits = []
        for train in (True, False):
            data = _CIFAR10(str(self.root), train=train, verify_md5=False)  # the sums were checked by the constructor
            images = torch.from_numpy(np.ascontiguousarray(data.data.transpose(0, 3, 1, 2)))  # HWC -> CHW
            splits.append((images, torch.as_tensor(data.targets, dtype=torch.long)))
        return splits[0], splits[1]
