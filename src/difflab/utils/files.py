"""File writes that a kill cannot leave half done."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["atomic_write", "atomic_torch_save", "fsync_directory", "file_sha256", "load_error"]


def fsync_directory(directory: str | Path) -> None:
    """Make the entries of ``directory`` (a rename into it, a new file) durable."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(handle)`` into a temporary file beside ``path``, flushed to disk, then renamed over ``path``.

    A rename within one directory is atomic: a reader (or a resumed run) sees the old complete file or the
    new complete file, never a partial one, whenever the writer is killed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(path.parent)  # make the rename itself durable


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_error(err: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` (or loading what it returned) failed, in one short line:
    torch's own messages run to paragraphs and advise ``weights_only=False``, which difflab never uses."""
    text = str(err)
    if "WeightsUnpickler error:" in text:  # garbage, or pickled objects that are not tensors: refused, never run
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0].strip()
        return ("not a file of tensors only; weights_only refused it: "
                f"{detail.splitlines()[0] if detail else 'unknown content'}")
    first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else ""
    return f"{type(err).__name__}" + (f": {first}" if first else "")
