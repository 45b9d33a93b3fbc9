"""Find the jobs below some directories and read each one: its overrides, its fate, the step it reached and the
values it logged.

A job is a directory holding ``.hydra/overrides.yaml`` (a training or evaluation run, alone or in a sweep). Its
fate comes from ``status.json`` (``finished``; ``failed`` with its error line; ``running``, which also means killed,
is reported as ``incomplete``); a job without ``status.json`` counts as finished when its final file is there
(``evaluation.json`` of training, ``results.json`` of evaluation) and as incomplete otherwise.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from difflab.reporting.origin import TRAIN_PREFIX, TRAINED_CONFIG, training_run_dir
from difflab.reporting.series import (
    Series,
    best_value,
    last_value,
    merge,
    read_csv_logs,
    read_evaluation_history,
    read_json,
    read_results,
)
from difflab.sweeps.overrides import override_key

__all__ = ["Job", "FINISHED", "FAILED", "INCOMPLETE", "find_jobs", "read_job", "read_settings", "parse_overrides",
           "as_text"]

FINISHED, FAILED, INCOMPLETE = "finished", "failed", "incomplete"
OVERRIDES = Path(".hydra") / "overrides.yaml"
_SKIP_DIRS = {"checkpoints", "samples", "csv", "wandb", "tensorboard", "__pycache__"}


def _natural(path: Path) -> list[Any]:
    """Sort key: ``sweep/2`` before ``sweep/10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_jobs(roots: list[Path]) -> list[Path]:
    """Every job directory at or below ``roots`` (a run dir, a sweep dir or a folder of sweeps), in natural order.

    The walk does not enter a job's own subdirectories, nor checkpoints/samples/logs or hidden directories.
    """
    found: dict[Path, None] = {}
    for root in roots:
        for current, dirs, _ in os.walk(root):
            here = Path(current)
            if (here / OVERRIDES).is_file():
                found[here.resolve()] = None
                dirs.clear()
                continue
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS]
    return sorted(found, key=_natural)


def as_text(value: Any) -> str | None:
    """A config value written as on Hydra's command line (``true``, ``null``, ``[1,2]``); None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(as_text(v)) for v in value) + "]"
    return str(value)


def parse_overrides(lines: list[Any]) -> dict[str, str | None]:
    """``["schedule=cosine", "+x=1", "~y"]`` -> ``{"schedule": "cosine", "x": "1", "y": None}``."""
    out: dict[str, str | None] = {}
    for line in lines:
        key, sep, value = str(line).partition("=")
        out[override_key(key)] = None if key.startswith("~") or not sep else value
    return out


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _select(node: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class Job:
    """One job of a sweep, as read from its directory."""

    path: Path
    task: str                                 # train | evaluate
    status: str                               # finished | failed | incomplete
    step: int | None                          # the global step reached (an evaluation: its checkpoint's)
    error: str | None                         # a failed job's one-line error
    overrides: dict[str, str | None]          # the job's command-line overrides, key -> value as typed
    series: Series = field(default_factory=dict)   # {metric: {step: value}} logged during training
    results: dict[str, float] = field(default_factory=dict)  # an evaluation job's values
    row: dict[str, Any] = field(default_factory=dict)        # an evaluation job's result row (nfe, seconds...)
    config_file: Path | None = None                          # the config read for settings (default: the job's)

    def last(self, metric: str) -> float | None:
        """The metric's final value: an evaluation result, else the value logged at the largest step."""
        return self.results[metric] if metric in self.results else last_value(self.series.get(metric, {}))

    def best(self, metric: str) -> float | None:
        """The best value logged (min; max for IS, accuracy, precision, recall); an evaluation result is its own."""
        return self.results[metric] if metric in self.results else best_value(metric, self.series.get(metric, {}))

    @property
    def metric_names(self) -> list[str]:
        """Every metric the job logged or scored."""
        return list(dict.fromkeys([*self.series, *self.results]))

    @cached_property
    def _hydra(self) -> Any:
        return _yaml(self.path / ".hydra" / "hydra.yaml")

    @cached_property
    def _choices(self) -> dict[str, Any]:
        return _select(self._hydra, "hydra.runtime.choices") or {}

    @cached_property
    def _config(self) -> Any:
        if self.config_file is not None:
            return _yaml(self.config_file)
        resolved = _yaml(self.path / "resolved_config.yaml")
        return resolved if isinstance(resolved, dict) else _yaml(self.path / ".hydra" / "config.yaml")

    @cached_property
    def training_run(self) -> Job | None:
        """The training run that made the checkpoint this evaluation job scored (its settings only; see
        :mod:`~difflab.reporting.origin`): its run directory, else the job's copy of the checkpoint's training config;
        a training job is its own; None when neither is found."""
        if self.task != "evaluate":
            return self
        cwd = _select(self._hydra, "hydra.runtime.cwd")
        run_dir = training_run_dir(self.setting("ckpt_path"), str(cwd) if cwd else None)
        if run_dir:
            return read_settings(run_dir)
        recorded = self.path / TRAINED_CONFIG
        if recorded.is_file():
            return Job(path=self.path, task="train", status=FINISHED, step=None, error=None, overrides={},
                       config_file=recorded)
        return None

    def setting(self, key: str) -> str | None:
        """The job's value of ``key``: its override, else a column of an evaluation's result row (``nfe``), else the
        config group it chose (``schedule`` -> ``linear``), else the value in its resolved config
        (``schedule.num_timesteps`` -> ``1000``). ``train.<key>`` is the setting of the training run that made the
        checkpoint scored (``train.seed``; None when it is not found)."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.row and not isinstance(self.row[key], dict | list):
            return as_text(self.row[key])
        if key.startswith(TRAIN_PREFIX):
            run = self.training_run
            return run.setting(key.removeprefix(TRAIN_PREFIX)) if run else None
        if key in self._choices:
            return as_text(self._choices[key])
        value = _select(self._config, key)
        return as_text(value) if value is None or not isinstance(value, dict) else None


def _fate(record: dict[str, Any] | None, finished_file: bool) -> tuple[str, str | None]:
    if not isinstance(record, dict):
        return (FINISHED if finished_file else INCOMPLETE), None
    status = record.get("status")
    if status == FAILED:
        error = str(record.get("error") or "no error recorded").strip()
        return FAILED, (error.splitlines() or [""])[0]
    return (FINISHED, None) if status == FINISHED else (INCOMPLETE, None)


def _overrides(job_dir: Path, record: dict[str, Any] | None) -> dict[str, str | None]:
    # the run's own record first: Hydra rewrites .hydra/ for every job started in the directory, even one refused
    overrides_list = (record or {}).get("overrides") if (record or {}).get("task") else None
    if not isinstance(overrides_list, list):
        overrides_list = _yaml(job_dir / OVERRIDES)
    return parse_overrides(overrides_list if isinstance(overrides_list, list) else [])


def read_settings(run_dir: Path) -> Job:
    """A training run's settings and status, without its logged values (its step unknown)."""
    record = read_json(run_dir / "status.json")
    record = record if isinstance(record, dict) else None
    status, error = _fate(record, (run_dir / "evaluation.json").is_file())
    return Job(path=run_dir, task="train", status=status, step=None, error=error,
               overrides=_overrides(run_dir, record))


def read_job(job_dir: Path) -> Job:
    """Read one job directory; missing or half-written files leave their part empty (a sweep may be running)."""
    job_dir = Path(job_dir)
    record = read_json(job_dir / "status.json")
    record = record if isinstance(record, dict) else None
    results = read_results(job_dir)
    task = (record or {}).get("task") or ("evaluate" if results or (job_dir / "evaluate.log").exists() else "train")
    series = merge(read_evaluation_history(job_dir), read_csv_logs(job_dir))
    final_file = results is not None or isinstance(read_json(job_dir / "evaluation.json"), dict)  # complete ones
    status, error = _fate(record, final_file)
    if record is not None and task == "train":  # final values missing from the logs (e.g. logger=none)
        step = record.get("step")
        for name, value in (record.get("metrics") or {}).items():
            if name not in series and isinstance(step, int) and isinstance(value, int | float):
                series[name] = {step: float(value)}
    evidence = [s for points in series.values() for s in points]  # the step reached: the largest one seen
    evidence += [s for s in ((record or {}).get("step"), results[1].get("step") if results else None)
                 if isinstance(s, int) and not isinstance(s, bool) and s >= 0]
    step = max(evidence) if evidence else None
    return Job(path=job_dir, task=str(task), status=status, step=step, error=error,
               overrides=_overrides(job_dir, record), series=series, results=results[0] if results else {},
               row=results[1] if results else {})
