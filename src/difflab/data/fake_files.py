"""Tiny datasets written in the real on-disk formats (MNIST IDX, CIFAR-10 pickles, image folders).

For tests and ``benchmarks/loader_throughput.py``: the DataModules read these with exactly the code that reads the
real files. Pixels are random (seeded), labels cycle through the classes.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_idx", "write_mnist", "write_cifar10", "write_image_folder", "write_fake"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic 0x0000 0x08 <ndim>, the dimensions as big-endian int32, the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist(root: Path, folder: str = "MNIST", num_train: int = 64, num_test: int = 16, seed: int = 0) -> Path:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (folder: MNIST or FashionMNIST)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    for prefix, n in (("train", num_train), ("t10k", num_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return raw


def write_cifar10(root: Path, per_batch: int = 16, num_test: int = 16, seed: int = 0) -> Path:
    """``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``: pickled dicts as in the
    official archive (``data``: uint8 [N, 3072] rows of R, G, B planes; ``labels``: list of int)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        n = num_test if name == "test_batch" else per_batch
        entry = {
            "batch_label": f"batch {i + 1}",
            "labels": [int(k % 10) for k in range(n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"image_{i}_{k}.png" for k in range(n)],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": classes, "num_cases_per_batch": per_batch, "num_vis": 3072}, handle, protocol=2)
    return folder


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cats", "dogs"), per_class: int = 10, seed: int = 0,
                       bad_files: bool = False) -> Path:
    """Images of mixed modes (L, RGB, RGBA, P), sizes and formats (PNG, JPEG) in class subfolders (``classes=()``:
    a flat folder); ``bad_files`` adds a truncated PNG and a text file."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    modes = ["L", "RGB", "RGBA", "P"]
    for c, name in enumerate(classes or ("",)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            mode = modes[k % len(modes)]
            w, h = int(rng.integers(20, 60)), int(rng.integers(20, 60))
            bands = {"L": 1, "RGB": 3, "RGBA": 4, "P": 1}[mode]
            pixels = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
            img = Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels, mode="L" if bands == 1 else mode)
            if mode == "P":
                img = img.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
            jpeg = mode in ("L", "RGB") and k % 2 == 1
            img.save(folder / f"img_{c}_{k:03d}.{'jpg' if jpeg else 'png'}")
    if bad_files:
        bad = root / (classes[0] if classes else "")
        good = next(bad.glob("*.png")).read_bytes()
        (bad / "truncated.png").write_bytes(good[: len(good) // 3])
        (bad / "notes.txt").write_text("not an image\n")
    return root


def write_fake(dataset: str, root: Path) -> Path:
    """Write a tiny ``dataset`` (mnist, fashion_mnist, cifar10, image_folder) under ``root``; returns the value of
    ``dataset.root`` that reads it."""
    root = Path(root)
    if dataset == "mnist":
        write_mnist(root, "MNIST")
    elif dataset == "fashion_mnist":
        write_mnist(root, "FashionMNIST")
    elif dataset == "cifar10":
        write_cifar10(root)
    elif dataset == "image_folder":
        write_image_folder(root / "images")
        return root / "images"
    else:
        raise ValueError(f"no fake files for dataset={dataset!r}; choose mnist, fashion_mnist, cifar10 or image_folder")
    return root
