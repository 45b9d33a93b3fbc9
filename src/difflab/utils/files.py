"""File writes that a kill cannot leave half done."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_torch_save", "file_sha256"]


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` into a temporary file beside ``path``, flushed to disk, then renamed over ``path``.

    A rename within one directory is atomic: a reader (or a resumed run) sees the old complete file or the
    new complete file, never a partial one, whenever the writer is killed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
