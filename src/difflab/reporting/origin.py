"""Which training run made the checkpoint an evaluation job scored: the run directory a ``ckpt_path`` belongs to.

difflab-train writes its checkpoints into ``<run>/checkpoints/`` beside ``<run>/resolved_config.yaml``,
``<run>/status.json`` and ``<run>/.hydra/``, so ``ckpt_path=outputs/train/multiruns/<date>/1/checkpoints/last.ckpt``
was made by the run ``outputs/train/multiruns/<date>/1``; the report reads that run's settings as ``train.<key>``
(``train.seed``). A checkpoint moved away from its run directory has no known origin (None), never a guessed one;
then the copy of the checkpoint's training config that difflab-evaluate writes beside its result
(``<evaluation job>/trained_config.yaml``) still answers ``train.<key>`` for every config value (a study's committed
runs carry it without checkpoints or training runs), though not the config group a run chose by name.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TRAIN_PREFIX", "TRAINED_CONFIG", "training_run_dir"]

TRAIN_PREFIX = "train."  # train.<key>: the setting of the training run that made an evaluation job's checkpoint
TRAINED_CONFIG = "trained_config.yaml"  # an evaluation job's copy of its checkpoint's training config


def training_run_dir(ckpt_path: str | None, cwd: str | None) -> Path | None:
    """The training run directory of ``ckpt_path`` (a relative path is resolved against ``cwd``, the directory the
    evaluation ran in, as difflab-evaluate resolved it): ``<run>`` of ``<run>/checkpoints/<file>`` when ``<run>``
    still holds its config (``resolved_config.yaml`` or ``.hydra/``); None otherwise, and for a relative path
    without a known ``cwd``."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path).expanduser()
    if not path.is_absolute():
        if not cwd:
            return None
        path = Path(cwd) / path
    run = path.parent.parent
    if path.parent.name != "checkpoints" or not ((run / "resolved_config.yaml").is_file() or (run / ".hydra").is_dir()):
        return None
    return run
