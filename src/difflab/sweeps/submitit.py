"""The submitit side of the launcher presets (``conf/hydra/launcher/submitit_{local,slurm}.yaml``).

The presets size a job with the resolvers ``difflab_gpus_per_node`` and ``difflab_tasks_per_node``: from the trainer
of ``difflab-train`` (one SLURM task per device, as Lightning's SLURM DDP expects), or from ``device`` of
``difflab-evaluate`` (one process, one GPU unless ``device=cpu``). In a job, :func:`link_submitit_logs` links
submitit's log folder into the job directory and :func:`requeued_resume` makes a requeued job continue its run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from difflab.sweeps.status import read_status

__all__ = ["GPU_ACCELERATORS", "gpus_per_node", "job_processes", "link_submitit_logs", "requeued_resume",
           "tasks_per_node"]

log = logging.getLogger(__name__)

GPU_ACCELERATORS = ("gpu", "cuda", "auto")  # auto: a GPU when there is one (difflab-evaluate's default device)


def _devices(devices: Any, accelerator: str) -> int:
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices
    if accelerator == "cpu" and devices in ("auto", -1):
        return 1
    raise ValueError(f"trainer.devices={devices!r}: a launcher preset needs the number of devices per node "
                     "(e.g. trainer.devices=4)")


def _on_gpus(accelerator: Any) -> bool:
    """``gpu``, ``cuda``, ``cuda:1`` (evaluate's ``device``) and ``auto`` ask for GPUs; ``cpu`` (and ``mps``) not."""
    return str(accelerator).split(":", 1)[0] in GPU_ACCELERATORS


def gpus_per_node(accelerator: str, devices: Any) -> int | None:
    """``hydra.launcher.gpus_per_node`` of the submitit presets: ``devices`` on GPUs, None on the CPU."""
    return _devices(devices, str(accelerator)) if _on_gpus(accelerator) else None


def tasks_per_node(accelerator: str, devices: Any) -> int:
    """``hydra.launcher.tasks_per_node`` of submitit_slurm: one task per device (Lightning's SLURM DDP)."""
    return _devices(devices, str(accelerator))


for _name, _fn in (("difflab_gpus_per_node", gpus_per_node), ("difflab_tasks_per_node", tasks_per_node)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)


def job_processes(trainer: Mapping[str, Any]) -> int:
    """The processes one training job runs: ``trainer.devices`` x ``trainer.num_nodes``."""
    return _devices(trainer.get("devices", 1), str(trainer.get("accelerator", "cpu"))) * int(
        trainer.get("num_nodes", 1) or 1)


def in_submitit_job() -> bool:
    """Whether this process is a job started by submitit (local or SLURM)."""
    return "SUBMITIT_EXECUTOR" in os.environ


def link_submitit_logs(job_dir: Path) -> Path | None:
    """In a submitit job: ``<job dir>/submitit_logs`` -> this job's submitit folder (its ``*_log.out`` and
    ``*_log.err``), a relative link. None outside submitit."""
    if not in_submitit_job():
        return None
    import submitit

    folder = submitit.JobEnvironment().paths.folder
    link = job_dir / "submitit_logs"
    target = os.path.relpath(folder, job_dir)
    try:
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    except FileExistsError:  # another task of the same job made it
        pass
    return link


def requeued_resume(cfg: DictConfig) -> bool:
    """A submitit job whose own directory already holds the ``status.json`` of a training run (it was preempted or
    timed out and requeued with the same command, at any step, before its first checkpoint too): set
    ``resume=auto``, which continues from its checkpoints or, with none, starts afresh in the same directory.
    Nothing is changed when ``ckpt_path`` or ``resume`` was given. True when it was set."""
    if not in_submitit_job() or cfg.get("ckpt_path") is not None or cfg.get("resume") is not None:
        return False
    record = read_status(cfg.paths.output_dir)
    if record is None or record.get("task") != cfg.get("task_name", "train"):
        return False
    cfg.resume = "auto"
    log.info(f"difflab: a requeued submitit job (its status.json says {record.get('status')} at step "
             f"{record.get('step')}): resume=auto")
    return True
