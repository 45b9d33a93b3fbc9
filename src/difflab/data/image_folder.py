"""Any folder of images (``dataset=image_folder``): decoded once, resized and centre-cropped, kept as uint8."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from difflab.data.images import ImageDataModule
from difflab.utils.checks import check_int, check_number

__all__ = ["ImageFolderDataModule", "decode_image", "scan_folder"]


def scan_folder(root: Path) -> tuple[list[tuple[Path, int]], list[str], list[Path]]:
    """(files with labels, class names, files outside any class folder) under ``root``.

    Like torchvision's ImageFolder: when ``root`` has subfolders, each one is a class (sorted names, label =
    position) holding its files at any depth, and files directly in ``root`` are left out; a flat folder gives
    every file label 0 and no class names. Hidden files and folders (name starting with ".") are ignored.
    """
    def visible(path: Path) -> bool:
        return not path.name.startswith(".")

    entries = sorted(p for p in root.iterdir() if visible(p))
    classes = [p.name for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file()]
    if not classes:
        return [(p, 0) for p in loose], [], []
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files += [(Path(dirpath) / f, label) for f in sorted(filenames) if not f.startswith(".")]
    return files, classes, loose


def decode_image(path: Path, image_size: int, channels: int) -> torch.Tensor:
    """uint8 [channels, image_size, image_size]: the image converted to "L" or "RGB", its shorter side resized to
    ``image_size`` (bicubic, antialiased) and the centre cropped. Raises (OSError, ValueError, ...) if unreadable."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("P", "PA") or (img.mode == "LA" and channels == 3):
            img = img.convert("RGBA")
        img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    scale = image_size / min(w, h)
    size = (max(image_size, round(w * scale)), max(image_size, round(h * scale)))
    if size != (w, h):
        img = img.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - image_size) // 2, (size[1] - image_size) // 2
    img = img.crop((left, top, left + image_size, top + image_size))
    array = np.asarray(img, dtype=np.uint8)
    if channels == 1:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


class ImageFolderDataModule(ImageDataModule):
    """The images under ``root`` (class subfolders give labels), decoded in the constructor.

    Files that cannot be decoded as images are skipped and counted in one warning, or with ``strict`` the
    first one stops the run. A fixed ``val_fraction`` of the images (chosen with ``split_seed``, independent of
    the training seed) is held out as the val split. ``num_classes`` is the number of class subfolders (None for
    a flat folder: unlabelled); ``channels`` (1 or 3) and ``image_size`` are chosen.
    """

    name = "image_folder"

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 32,
        channels: int = 3,
        hflip: bool = False,
        strict: bool = False,
        val_fraction: float = 0.05,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """``kwargs`` go to :class:`ImageDataModule` (batch_size, num_workers, seed, ...)."""
        super().__init__(hflip=hflip, **kwargs)
        if root is None or not isinstance(root, (str, os.PathLike)) or not str(root):
            raise ValueError(f"dataset.root={root!r}: set dataset.root=/path/to/images "
                             "(a folder of images or of class subfolders)")
        check_int("dataset.image_size", image_size, 4)
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ValueError(f"dataset.channels={channels!r} must be 1 (grayscale, mode L) or 3 (RGB)")
        if not isinstance(strict, bool):
            raise ValueError(f"dataset.strict={strict!r} must be true or false")
        check_number("dataset.val_fraction", val_fraction, 0.0, 1.0, high_open=True)
        self.root = Path(root).expanduser()
        self.image_size, self.channels, self.strict = image_size, channels, strict
        self.val_fraction, self.split_seed = float(val_fraction), int(split_seed)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset.root={str(self.root)!r} is not an existing directory")
        files, self.classes, loose = scan_folder(self.root)
        if not files:
            raise FileNotFoundError(f"dataset.root={str(self.root)!r} holds no files "
                                    "(an image folder needs images, or class subfolders of images)")
        self.num_classes = len(self.classes) or None
        self.images, self.labels, self.skipped = self.decode_all(files)
        if loose:
            warnings.warn(
                f"dataset=image_folder: {len(loose)} file(s) directly in {self.root} are not in a class subfolder "
                f"and are not used (first: {loose[0].name})",
                stacklevel=2,
            )

    def decode_all(self, files: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
        """Decode every file; (uint8 images, labels, skipped files), with one warning for the skipped ones."""
        images, labels, skipped = [], [], []
        for path, label in files:
            try:
                images.append(decode_image(path, self.image_size, self.channels))
            except Exception as err:  # noqa: BLE001 - PIL raises many kinds of errors for bad files
                if self.strict:
                    raise ValueError(
                        f"dataset.strict=true: {path} is not a readable image ({type(err).__name__}: {err})") from None
                skipped.append(path)
                continue
            labels.append(label)
        if not images:
            raise FileNotFoundError(
                f"dataset.root={str(self.root)!r}: none of its {len(files)} file(s) is a readable image")
        if skipped:
            warnings.warn(
                f"dataset=image_folder: skipped {len(skipped)} of {len(files)} file(s) under {self.root} "
                f"that are not readable images (first: {skipped[0]}); dataset.strict=true makes this an error",
                stacklevel=3,
            )
        return torch.stack(images), torch.tensor(labels, dtype=torch.long), skipped

    def load(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.images)
        num_val = min(n - 1, round(n * self.val_fraction)) if self.val_fraction > 0 else 0
        if self.val_fraction > 0 and n >= 2:
            num_val = max(1, num_val)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        val, train = order[:num_val].sort().values, order[num_val:].sort().values
        return (self.images[train], self.labels[train]), (self.images[val], self.labels[val])
