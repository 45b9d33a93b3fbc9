"""Who a job is, from Hydra's runtime config: the W&B group, run name, job type and tags of a run or a sweep's job.

A sweep's jobs share a group naming the sweep (its directory relative to ``paths.log_dir``, e.g.
``train/multiruns/2026-11-30_22-40-00``) and are named by what distinguishes them: the overrides of the swept keys
(``schedule=cosine,seed=1``), which are also their tags. A single run has no group and is named by its overrides
(or, without any, by its task).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

from difflab.sweeps.overrides import is_plumbing, override_key

__all__ = ["MAX_TAG_LENGTH", "RunIdentity", "run_identity", "run_overrides", "sweep_group", "tag"]

MAX_TAG_LENGTH = 64  # W&B refuses longer tags


@dataclass(frozen=True)
class RunIdentity:
    """The W&B identity of one job: ``group`` (None: not part of a sweep), ``name``, ``job_type``, ``tags``."""

    group: str | None
    name: str
    job_type: str
    tags: tuple[str, ...] = field(default_factory=tuple)


def tag(text: str) -> str:
    """``text`` as a W&B tag: cut to 64 characters, the last one an ellipsis when cut."""
    return text if len(text) <= MAX_TAG_LENGTH else text[: MAX_TAG_LENGTH - 1] + "…"


def _excluded(key: str, keep_ckpt_path: bool = False) -> bool:
    return is_plumbing(key) or (key == "ckpt_path" and not keep_ckpt_path)


def run_overrides(overrides: Iterable[str], keys: Iterable[str] | None = None) -> list[str]:
    """The overrides that tell what a job is, in the order given: without ``hydra.*``, ``ckpt_path``, ``resume`` and
    ``logger*`` (:func:`~difflab.sweeps.overrides.is_plumbing`); when ``keys`` (a sweep's varied keys) are given,
    exactly those (a swept ``ckpt_path`` names the checkpoint each job evaluates), still without the plumbing."""
    if keys is None:
        return [o for o in overrides if not _excluded(override_key(o))]
    wanted = set(keys)
    return [o for o in overrides if override_key(o) in wanted and not _excluded(override_key(o), keep_ckpt_path=True)]


def swept_keys(sweep_dir: Path, sweeper_params: Iterable[str] = ()) -> set[str] | None:
    """The keys a sweep varies: those whose command-line override is a sweep (``a=1,2``, ``range``, ``choice``,
    ``interval``, as the sweeper saved them in ``<sweep_dir>/multirun.yaml``) and those of ``hydra.sweeper.params``.
    None when neither can be read."""
    keys = {override_key(k) for k in sweeper_params}
    saved = sweep_dir / "multirun.yaml"
    if not saved.is_file():
        return keys or None
    try:
        given = list(OmegaConf.load(saved).hydra.overrides.task)
        parsed = OverridesParser.create().parse_overrides(given)
    except Exception:  # noqa: BLE001 - an unreadable record only makes the name longer
        return keys or None
    keys |= {override_key(o.get_key_element()) for o in parsed if o.is_sweep_override()}
    return keys


def sweep_group(sweep_dir: str | Path, log_dir: str | Path | None) -> str:
    """The group of a sweep: its directory relative to ``log_dir`` (``train/multiruns/2026-11-30_22-40-00``), or
    the directory's name when it lies elsewhere."""
    path = Path(sweep_dir).resolve()
    if log_dir is not None:
        try:
            return path.relative_to(Path(log_dir).resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def _identity(task_name: str, overrides: Sequence[str], group: str | None, keys: Iterable[str] | None) -> RunIdentity:
    chosen = run_overrides(overrides, keys)
    if keys is not None and not chosen:  # nothing swept in this job (a one-job sweep): all its overrides
        chosen = run_overrides(overrides)
    return RunIdentity(group=group, name=",".join(chosen) or task_name, job_type=task_name,
                       tags=tuple(dict.fromkeys(tag(o) for o in chosen)))


def run_identity(task_name: str | None = None, log_dir: str | Path | None = None) -> RunIdentity:
    """The identity of the current Hydra job (``HydraConfig``): in a ``--multirun`` sweep the group is the sweep
    (see :func:`sweep_group`) and the name the job's swept overrides; a single run has no group and is named by
    its overrides. ``task_name`` (default: Hydra's job name) is the job type and the name of a run without
    overrides. Outside Hydra: no group, no tags."""
    if not HydraConfig.initialized():
        task = task_name or "train"
        return RunIdentity(group=None, name=task, job_type=task)
    hydra_cfg = HydraConfig.get()
    task = task_name or hydra_cfg.job.name
    overrides = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return _identity(task, overrides, None, None)
    params = OmegaConf.select(hydra_cfg, "sweeper.params", default=None) or {}
    keys = swept_keys(Path(hydra_cfg.sweep.dir), list(params))
    return _identity(task, overrides, sweep_group(hydra_cfg.sweep.dir, log_dir), keys)
