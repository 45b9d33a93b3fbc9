"""What a job's command-line overrides say: the key each sets, and which keys only tell where and how a job runs.

One rule for every reader of overrides: ``resume=auto`` (is a directory's run this job?), W&B names and tags, and
``difflab-report``'s swept keys. Plain Python (no torch, no Hydra), so that the report stays quick.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["override_key", "is_plumbing", "identity_overrides", "in_sweep"]

# Keys that say where and how a job runs or logs, not what it computes: Hydra's settings (hydra.*, hydra/launcher=...),
# the loggers and the resume switch.
PLUMBING = ("hydra", "logger", "resume")
# Keys that continue a run rather than define it: resuming from a checkpoint, training for longer.
CONTINUATION = ("ckpt_path", "trainer.max_steps")


def override_key(override: str) -> str:
    """The key an override sets, without ``+``/``++``/``~``: ``+a.b=1`` -> ``a.b``, ``sampler@evaluation.sampler=x``
    -> ``sampler@evaluation.sampler``, ``hydra/launcher=joblib`` -> ``hydra/launcher``."""
    return override.split("=", 1)[0].lstrip("+~")


def is_plumbing(key: str) -> bool:
    """Whether an override of ``key`` only says where and how a job runs or logs (``hydra.*``, ``hydra/...``,
    ``logger*``, ``resume``), not what it computes."""
    base = key.split("@", 1)[0]
    return any(base == k or base.startswith((f"{k}.", f"{k}/")) for k in PLUMBING)


def identity_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides that define what a run computes, sorted: without plumbing (:func:`is_plumbing`) and without
    ``ckpt_path`` and ``trainer.max_steps`` (a run continued or trained for longer is still the same run)."""
    return sorted(o for o in overrides if not is_plumbing(override_key(o)) and override_key(o) not in CONTINUATION)


def in_sweep() -> bool:
    """Whether the current Hydra job is a job of a ``--multirun`` sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
