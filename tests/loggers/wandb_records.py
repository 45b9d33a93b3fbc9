"""Read an offline W&B run back from its ``run-<id>.wandb`` file: a LevelDB-style log of protobuf records.

The file opens with a 7-byte header (``:W&B``, magic 0xBEE1, version 0) and holds 32 KiB blocks of chunks, each
with a 7-byte header (CRC-32, length, type: full, first, middle, last); a block's tail shorter than a chunk header
is padding. Each whole chunk sequence is one ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
BLOCK = 32768
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every whole record of the file, in order (a record still being written is left out); a chunk whose checksum
    does not match fails the read."""
    data = path.read_bytes()
    assert data[: len(HEADER)] == HEADER, f"{path} is not a W&B transaction log"
    records, pending, pos = [], b"", len(HEADER)
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:
            pos += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos: pos + CHUNK_HEADER])
        if kind == 0 and length == 0:  # zero padding up to the block's end
            pos += left
            continue
        if pos + CHUNK_HEADER + length > len(data):  # the writer is not done with it yet
            break
        chunk = data[pos + CHUNK_HEADER: pos + CHUNK_HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == checksum, f"bad checksum at byte {pos} of {path}"
        pos += CHUNK_HEADER + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(pending + chunk)
            pending = b""
    return [wandb_internal_pb2.Record.FromString(r) for r in records]


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def _items(items: Any) -> dict[str, Any]:
    """Record items as a dict; a nested key (``samples/grid`` -> ``width``) becomes a nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        keys = list(item.nested_key) or [item.key]
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = json.loads(item.value_json)
    return out


@dataclass
class OfflineRun:
    """What an offline run holds: its identity, config, history rows and final summary."""

    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


def read_run(path: Path) -> OfflineRun:
    """The run recorded in ``path`` (config updates merged, summary updates applied in order)."""
    run = OfflineRun()
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.name, run.group, run.job_type, run.tags = (r.run_id, r.display_name, r.run_group,
                                                                         r.job_type, list(r.tags))
            run.config.update(_items(r.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
            for i in record.summary.remove:
                run.summary.pop(_key(i), None)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def read_finished_run(path: Path, timeout: float = 30.0) -> OfflineRun:
    """:func:`read_run` once the run's exit record is on disk: ``finish()`` returns before W&B's service has
    written the whole file."""
    deadline = time.monotonic() + timeout
    while True:
        run = read_run(path)
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.1)
