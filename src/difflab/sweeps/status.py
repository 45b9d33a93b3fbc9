"""``<job dir>/status.json``: what became of a job (running, finished, failed), read by ``resume=auto`` and the report.

Written atomically by rank zero of ``difflab-train`` and ``difflab-evaluate``:

    {"task": "train", "status": "running" | "finished" | "failed", "step": 1800, "error": null,
     "started": "2026-11-30T22:40:00", "ended": null, "overrides": ["schedule=cosine", "seed=1"],
     "metrics": {"val/fid_digits-lenet_n1000_dpmpp2m20": 7.87}}

and, from ``difflab-train``, ``max_steps``, ``resumed_from`` (the checkpoint of this attempt, or null) and ``best``
(the best value of every scored metric).

A job killed (SIGKILL, preemption, a laptop lid) or still running leaves ``"running"``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from difflab.utils.files import atomic_write

__all__ = ["STATUS_FILE", "RUNNING", "FINISHED", "FAILED", "read_status", "write_status"]

STATUS_FILE = "status.json"
RUNNING, FINISHED, FAILED = "running", "finished", "failed"


def read_status(job_dir: str | Path) -> dict[str, Any] | None:
    """The job's status record, or None when it has none (or it cannot be read)."""
    path = Path(job_dir) / STATUS_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def write_status(job_dir: str | Path, status: str, **fields: Any) -> dict[str, Any]:
    """Update the job's record with ``status`` and ``fields`` (``ended`` is set when the job is over); returns it."""
    if status not in (RUNNING, FINISHED, FAILED):
        raise ValueError(f"status={status!r}: one of {RUNNING}, {FINISHED}, {FAILED}")
    record = {"task": None, "status": status, "step": 0, "error": None, "started": None, "ended": None,
              "overrides": [], "metrics": {}}
    record.update(read_status(job_dir) or {})
    record.update(fields, status=status)
    if status == RUNNING:
        record.update(started=fields.get("started") or _now(), ended=None, error=None)
    else:
        record["ended"] = _now()
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(Path(job_dir) / STATUS_FILE, lambda handle: handle.write(text.encode()))
    return record
