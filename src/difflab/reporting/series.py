"""A job's logged values as series {metric: {step: value}}: from its CSV logs, its ``evaluation.json`` history and
an evaluation job's ``results.json``; the last and the best value of a series.

Every reader tolerates files still being written (a sweep that is running): a truncated line, a cell that is not
a number or an unreadable JSON file is skipped, never an error.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from difflab.utils.metric_names import higher_is_better, short_name

__all__ = ["Series", "best_value", "last_value", "read_csv_logs", "read_evaluation_history", "read_results", "merge",
           "NOT_METRICS"]

Series = dict[str, dict[int, float]]  # {metric: {step: value}}

NOT_METRICS = frozenset({"epoch", "step"})  # columns of Lightning's CSV that are not logged values


def last_value(points: dict[int, float]) -> float | None:
    """The value at the largest step (None for an empty series)."""
    return points[max(points)] if points else None


def best_value(metric: str, points: dict[int, float]) -> float | None:
    """The best value of the series: its max when :func:`higher_is_better`, else its min (None when empty)."""
    if not points:
        return None
    return (max if higher_is_better(metric) else min)(points.values())


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if not math.isnan(value) else None


def merge(*series: Series) -> Series:
    """Merge series by step; a later argument's value wins where two give the same (metric, step)."""
    out: Series = {}
    for one in series:
        for metric, points in one.items():
            out.setdefault(metric, {}).update(points)
    return out


def _csv_order(path: Path) -> int:
    """``metrics.1.csv`` (the oldest, kept at the first resume) .. ``metrics.<k>.csv``, then ``metrics.csv``."""
    match = re.fullmatch(r"metrics\.(\d+)\.csv", path.name)
    return int(match.group(1)) if match else 1 << 30


def read_csv_file(path: Path) -> Series:
    """One Lightning CSV log (sparse rows: each row fills some columns) as series; rows without a step skipped, and
    a last line without its newline too (being written: its last number may be cut short)."""
    out: Series = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return out
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    try:
        for row in csv.DictReader(io.StringIO(complete, newline="")):
            step = _number(row.get("step"))
            if step is None:
                continue
            for name, cell in row.items():
                value = _number(cell) if isinstance(name, str) and name not in NOT_METRICS else None
                if value is not None:
                    out.setdefault(name, {})[int(step)] = value
    except csv.Error:
        return out
    return out


def read_csv_logs(job_dir: Path) -> Series:
    """Every ``csv/metrics*.csv`` of the job merged by step, a later file (after a resume) winning a repeated step."""
    files = sorted((job_dir / "csv").glob("metrics*.csv"), key=_csv_order)
    return merge(*(read_csv_file(path) for path in files))


def read_json(path: Path) -> Any:
    """The parsed JSON file, or None when it is missing or cannot be read (e.g. being written)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_evaluation_history(job_dir: Path) -> Series:
    """The ``history`` of the job's ``evaluation.json`` ([[step, {metric: value}], ...]) as series."""
    record = read_json(job_dir / "evaluation.json")
    out: Series = {}
    history = record.get("history") if isinstance(record, dict) else None
    for entry in history if isinstance(history, list) else []:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
            continue
        step = _number(entry[0])
        for name, cell in entry[1].items():
            value = _number(cell)
            if step is not None and value is not None:
                out.setdefault(str(name), {})[int(step)] = value
    return out


def read_results(job_dir: Path) -> tuple[dict[str, float], dict[str, Any]] | None:
    """An evaluation job's ``results.json`` row: ({metric: value}, row), or None when the job wrote none.

    The row holds each metric under its short name (``two_d``, ``fid``; the sampler and sample count are columns
    of their own), so a sweep over ``sampler.steps`` compares like with like; the report names them ``val/<short>``
    (``val/two_d``), beside training's full names (``val/two_d_n1000_dpmpp2m20``).
    """
    rows = read_json(job_dir / "results.json")
    if not (isinstance(rows, list) and rows and isinstance(rows[-1], dict)):
        return None
    row = rows[-1]
    try:
        names = json.loads(row.get("metric_names") or "[]")
    except (TypeError, ValueError):
        names = []
    values = {}
    for name in names:
        value = _number(row.get(short_name(name)))
        if value is not None:
            values[f"val/{short_name(name)}"] = value
    return values, row
