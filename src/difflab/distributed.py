"""DDP that keeps one run directory per Hydra job, also under ``--multirun``.

Lightning's DDP launcher re-runs the script for ranks 1..N-1 with the original ``sys.argv`` and
``hydra.run.dir``. Under ``--multirun`` that command is the whole sweep, and ``run.dir`` is not the job's
directory, so each rank would start its own sweep into new directories. :class:`HydraJobDDPStrategy`
launches ranks 1..N-1 as *this job*: the job's own overrides, its output directory, no sweep.
The same strategy serves GPUs (NCCL) and the CPU (gloo); only ``process_group_backend`` differs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from unittest import mock

import torch
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers import subprocess_script
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

__all__ = ["HydraJobDDPStrategy", "hydra_job_command", "restore_distributed_env"]

DISTRIBUTED_ENV_KEYS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK",
                        "LOCAL_WORLD_SIZE")


def hydra_job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command that re-runs the current Hydra job (not the sweep) as rank ``local_rank``, and its cwd."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    import __main__

    hc = HydraConfig.get()
    if getattr(__main__, "__spec__", None) is not None and __main__.__spec__.name:
        command = [sys.executable, "-m", __main__.__spec__.name]
    else:
        command = [sys.executable, os.path.abspath(sys.argv[0])]
    command += [f"--config-name={hc.job.config_name}"]
    for source in hc.runtime.config_sources:
        if source.provider == "command-line":
            command += [f"--config-dir={source.path}"]
    command += list(hc.overrides.task)
    output_dir = hc.runtime.output_dir
    command += [f'hydra.run.dir="{output_dir}"', f"hydra.job.name={hc.job.name}_rank{local_rank}",
                "hydra.output_subdir=null"]
    return command, get_original_cwd()


class _HydraJobLauncher(_SubprocessScriptLauncher):
    def launch(self, function: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        # Leave the process as it was found, so that the next job of a sweep starts its own process group
        # and children instead of believing it is a child of this one.
        with restore_distributed_env():
            try:
                return super().launch(function, *args, trainer=trainer, **kwargs)
            finally:
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    torch.distributed.destroy_process_group()

    def _call_children_scripts(self) -> None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            super()._call_children_scripts()
            return
        with mock.patch.object(subprocess_script, "_hydra_subprocess_cmd", hydra_job_command):
            super()._call_children_scripts()


class HydraJobDDPStrategy(DDPStrategy):
    """Lightning's ``DDPStrategy`` whose child processes re-run the current Hydra job (see module docstring)."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is _SubprocessScriptLauncher:
            self._launcher = _HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)


@contextmanager
def restore_distributed_env() -> Iterator[None]:
    """Undo the ``MASTER_PORT``/``LOCAL_RANK``/... variables a DDP launch sets, so the next job of a
    sweep launches its own processes instead of believing it is a child of the previous one."""
    saved = {key: os.environ.get(key) for key in DISTRIBUTED_ENV_KEYS}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
