"""Which checkpoint a run resumes from (``ckpt_path=last``, ``resume=auto``) and whether it fits the config.

``ckpt_path=last`` looks first in this run's own ``checkpoints/last.ckpt`` (a run restarted with the same
``hydra.run.dir``), then in the newest earlier run of the same task whose command-line overrides equal this run's
(:func:`~difflab.sweeps.overrides.identity_overrides`: ignoring ``ckpt_path``, ``trainer.max_steps``, ``resume``,
``logger`` and Hydra's settings): the same command plus ``ckpt_path=last`` continues the run it repeats.
``resume=auto`` does the same but starts afresh when there is nothing to resume. A job of a sweep looks only in its
own directory (job k of a sweep re-run in the same ``hydra.sweep.dir``), refuses a directory that holds another job,
and is skipped when its directory records it finished (``status.json``, same ``trainer.max_steps``): a sweep re-run
with ``resume=auto`` runs only what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from difflab.errors import ConfigError
from difflab.module import CHECKPOINT_KEY
from difflab.sweeps.overrides import identity_overrides
from difflab.sweeps.status import FINISHED, read_status

__all__ = ["recorded_overrides", "check_own_directory", "check_fresh_directory", "find_last_checkpoint",
           "finished_job", "resolve_ckpt_path", "config_mismatches"]

# The parts of a run's config that must equal the checkpoint's for its weights and optimizer state to fit and
# mean what they meant: the network, the objective, the whole noise schedule (each of its keys changes the betas
# the network learnt), the data's shape and (for a conditional model, see config_mismatches) its classes.
MODEL_KEYS = ("backbone", "objective", "schedule", "conditioning.enabled", "ema.enabled", "dataset.name",
              "data.shape", "data.num_classes")


def recorded_overrides(run: Path) -> list[str] | None:
    """The overrides a run directory's own run was started with: its ``status.json`` record (which Hydra does not
    touch), else ``.hydra/overrides.yaml`` (rewritten by Hydra for every job started there, even one refused)."""
    record = read_status(run)
    if record is not None and record.get("task"):
        return list(record.get("overrides") or [])
    saved = run / ".hydra" / "overrides.yaml"
    return (yaml.safe_load(saved.read_text()) or []) if saved.is_file() else None


def check_own_directory(output_dir: Path, overrides: Sequence[str]) -> None:
    """Refuse to resume in ``output_dir`` when its ``status.json`` records a job with other overrides (a fixed
    ``hydra.sweep.dir`` re-used for another sweep: job k would continue another job's run)."""
    record = read_status(output_dir)
    if record is None:
        return
    recorded, wanted = identity_overrides(record.get("overrides") or []), identity_overrides(overrides)
    if recorded != wanted:
        raise ConfigError(f"{output_dir} holds a run of other overrides {recorded}, not {wanted}; resume the same "
                          "command (same sweep axes, in the same order) or give the sweep a new hydra.sweep.dir")


def check_fresh_directory(output_dir: Path) -> None:
    """Refuse to start a run afresh in ``output_dir`` when it holds a run that got somewhere (its checkpoints and
    logs would be overwritten): a sweep re-run in a fixed ``hydra.sweep.dir`` without ``resume=auto``."""
    record = read_status(output_dir)
    if record is None or (not record.get("step") and not (output_dir / "checkpoints" / "last.ckpt").is_file()):
        return
    raise ConfigError(f"{output_dir} holds a run already ({record.get('status')} at step {record.get('step')}); "
                      "add resume=auto to continue it (or skip it when finished), or give a new hydra.sweep.dir "
                      "(hydra.run.dir for a single run)")


def finished_job(
    output_dir: Path, overrides: Sequence[str], max_steps: int, sweep_job: bool = False
) -> dict[str, Any] | None:
    """The ``status.json`` record of ``output_dir`` when it holds this very job (same overrides), finished with the
    same ``trainer.max_steps``: ``resume=auto`` then skips it and keeps its results. None otherwise. A sweep job
    whose directory holds another job is refused (:func:`check_own_directory`)."""
    if sweep_job:
        check_own_directory(output_dir, overrides)
    record = read_status(output_dir)
    if (record is None or record.get("status") != FINISHED or record.get("max_steps") != max_steps
            or identity_overrides(record.get("overrides") or []) != identity_overrides(overrides)):
        return None
    return record


def find_last_checkpoint(
    output_dir: Path, task_dir: Path, overrides: Sequence[str], own_only: bool = False
) -> Path | None:
    """This run's ``last.ckpt``, else (unless ``own_only``: a sweep job) the newest ``last.ckpt`` of an earlier run
    in ``task_dir`` with the same overrides."""
    own = output_dir / "checkpoints" / "last.ckpt"
    if own.is_file() or own_only:
        return own if own.is_file() else None
    wanted = identity_overrides(overrides)
    candidates = []
    for ckpt in (list(task_dir.glob("runs/*/checkpoints/last.ckpt"))
                 + list(task_dir.glob("multiruns/*/*/checkpoints/last.ckpt"))):
        run = ckpt.parent.parent
        recorded = recorded_overrides(run)
        if run != output_dir and recorded is not None and identity_overrides(recorded) == wanted:
            candidates.append(ckpt)
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def resolve_ckpt_path(
    ckpt_path: str | None, resume: str | bool | None, output_dir: Path, task_dir: Path, overrides: Sequence[str],
    sweep_job: bool = False,
) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` as given, or found for ``last`` / ``resume=auto``; None: a fresh
    run. A sweep job resumes in its own directory only when it holds the same job (:func:`check_own_directory`)."""
    if resume not in (None, False, "auto"):
        raise ConfigError(f"resume={resume!r} is not accepted; "
                          "use auto (continue the last matching run if there is one) or null")
    if ckpt_path is not None and ckpt_path != "last":
        return str(ckpt_path)
    if ckpt_path is None and resume != "auto":
        check_fresh_directory(output_dir)
        return None
    if sweep_job:
        check_own_directory(output_dir, overrides)
    found = find_last_checkpoint(output_dir, task_dir, overrides, own_only=sweep_job)
    if found is None and ckpt_path == "last":
        raise ConfigError(
            f"ckpt_path=last found no checkpoints/last.ckpt in {output_dir}"
            + ("" if sweep_job else f" nor in an earlier run under {task_dir}")
            + f" with the same overrides {identity_overrides(overrides)}; give the checkpoint's path instead"
        )
    return None if found is None else str(found)  # resume=auto with nothing to continue: start afresh


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def config_mismatches(checkpoint: Mapping[str, Any], run_config: Mapping[str, Any]) -> list[str]:
    """``key: checkpoint value -> requested value`` for every model-defining key that differs."""
    saved = _flatten(checkpoint[CHECKPOINT_KEY]["config"])
    wanted = _flatten(run_config)
    keys = sorted({k for k in (*saved, *wanted) if any(k == m or k.startswith(m + ".") for m in MODEL_KEYS)})
    if "data" not in run_config:  # the data facts are not known yet (no data module built): nothing to compare
        keys = [k for k in keys if not k.startswith("data.")]
    if not saved.get("conditioning.enabled") and not wanted.get("conditioning.enabled"):
        # the classes size only a conditional model's label embedding
        keys = [k for k in keys if k != "data.num_classes"]
    return [f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in keys if saved.get(k) != wanted.get(k)]
