"""The difflab side of Hydra's launcher and sweeper plugins (``conf/hydra/launcher``: joblib, submitit_local,
submitit_slurm; ``conf/hparams_search``: Optuna).

:class:`SweepSetup` is a Hydra callback (``conf/hydra/default.yaml``). In the launching process, before any job
starts, it refuses in one line (exit status 2) a launcher or sweeper whose plugin is not installed (naming the
difflab extra that installs it), a launcher preset that cannot be sized for this task, a job that would start
processes of its own inside a launcher's worker (``trainer.devices`` x ``trainer.num_nodes`` > 1 under joblib or
submitit_local) and an ``optimized_metric`` the run does not log; then it creates the directory of a SQLite study
(SQLite does not). In each job's process it sets the threads of a joblib job (the cores shared by the parallel jobs)
or of a submitit job (``cpus_per_task``), and links a submitit job's log folder into the job directory
(:mod:`difflab.sweeps.submitit`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from difflab.configs import preset_refusal
from difflab.errors import ConfigError
from difflab.sweeps.submitit import job_processes, link_submitit_logs

__all__ = ["SweepSetup", "launcher_kind", "missing_plugin", "objective_refusal", "prepare_study_storage", "refusal",
           "sweeper_refusal", "threads_per_job", "usable_cores"]

log = logging.getLogger(__name__)

# launcher/sweeper module -> (pip distribution, difflab extra that installs it)
PLUGINS = {
    "hydra_plugins.hydra_joblib_launcher": ("hydra-joblib-launcher", "sweeps"),
    "hydra_plugins.hydra_submitit_launcher": ("hydra-submitit-launcher", "sweeps"),
    "hydra_plugins.hydra_optuna_sweeper": ("hydra-optuna-sweeper", "search"),
}
SQLITE = "sqlite:///"
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def launcher_kind(target: str) -> str:
    """``joblib``, ``submitit_local``, ``submitit_slurm`` or ``basic`` (any other launcher) for a ``_target_``."""
    if "hydra_joblib_launcher" in target:
        return "joblib"
    if "hydra_submitit_launcher" in target:
        return "submitit_slurm" if target.endswith("SlurmLauncher") else "submitit_local"
    return "basic"


def missing_plugin(target: str) -> str | None:
    """Why the plugin class ``target`` cannot be imported, with the command that installs it; None when it can."""
    module = target.rsplit(".", 1)[0]
    needed = [module] + (["submitit"] if "hydra_submitit_launcher" in module else [])
    for name in needed:
        try:
            importlib.import_module(name)
        except ImportError as err:
            package, extra = next((v for k, v in PLUGINS.items() if module.startswith(k)), (name, "sweeps"))
            return f"{package} cannot be imported ({err}); install it with: pip install \"difflab[{extra}]\""
    return None


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a SLURM or container allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(n_jobs: int | None, cores: int) -> int:
    """Threads of each of ``n_jobs`` parallel jobs so that they share ``cores`` (joblib's meaning of n_jobs:
    -1 all cores, -2 all but one, ...); 1 when there are more jobs than cores."""
    jobs = cores if n_jobs is None else (n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs))
    return max(1, cores // jobs)


def set_threads(threads: int) -> None:
    """Limit this process (torch's intra-op pool) and the processes it starts (OpenMP/MKL/BLAS) to ``threads``."""
    import torch

    torch.set_num_threads(threads)
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)


def _job_trainers(config: DictConfig) -> Iterator[tuple[list[str], Mapping[str, Any]]]:
    """(swept overrides, trainer node) of every job of a basic sweep, composed as the launcher will; just the
    master config's trainer for other sweepers (their jobs are decided while they run)."""
    yield [], config.trainer
    if "basic_sweeper" not in str(config.hydra.sweeper.get("_target_", "")):
        return
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    if not swept:
        return
    loader = GlobalHydra.instance().config_loader()
    for batch in BasicSweeper.split_arguments(parsed, None):
        for job in batch:
            yield ([o for o in job if o.split("=", 1)[0] in swept],
                   loader.load_sweep_config(config, list(job)).trainer)


def refusal(config: DictConfig) -> str | None:
    """Why this multirun cannot start with its launcher (one line), or None."""
    launcher = config.hydra.launcher
    target = str(launcher.get("_target_", ""))
    kind = launcher_kind(target)
    if kind == "basic":
        return None
    choice = config.hydra.runtime.choices.get("hydra/launcher", kind)
    reason = missing_plugin(target)
    if reason is not None:
        return f"hydra/launcher={choice}: {reason}"
    try:
        OmegaConf.to_container(launcher, resolve=True)
    except Exception as err:  # noqa: BLE001 - an interpolation of the preset that cannot be resolved
        cause = err.__cause__ or err
        return f"hydra/launcher={choice}: {str(cause).splitlines()[0]}"
    if kind == "submitit_slurm" or "trainer" not in config:
        return None
    for swept, trainer in _job_trainers(config):
        try:
            processes = job_processes(trainer)
        except ValueError as err:
            return f"hydra/launcher={choice}: {err}"
        if processes > 1:
            job = f" (job {' '.join(swept)})" if swept else ""
            return (f"hydra/launcher={choice} runs each job in one worker process, but trainer.devices x "
                    f"trainer.num_nodes = {processes}{job} asks for a DDP job that starts processes of its own; "
                    "run DDP jobs with the basic launcher (one after another) or hydra/launcher=submitit_slurm")
    return None


def sweeper_refusal(config: DictConfig) -> str | None:
    """Why the sweeper plugin cannot be used (one line), or None."""
    target = str(config.hydra.sweeper.get("_target_", ""))
    if not target.startswith("hydra_plugins."):
        return None
    reason = missing_plugin(target)
    if reason is not None:
        return f"hydra/sweeper={config.hydra.runtime.choices.get('hydra/sweeper')}: {reason}"
    return None


def objective_refusal(config: DictConfig) -> str | None:
    """Why ``optimized_metric`` cannot be returned to the sweeper (one line, checked on the sweep's config; each
    trial checks its own again before training), or None."""
    if not config.get("optimized_metric"):
        return None
    from difflab.sweeps.search import search_objective

    try:
        search_objective(config, config.hydra.sweeper)
    except ConfigError as err:
        return str(err)
    return None


def prepare_study_storage(config: DictConfig) -> Path | None:
    """Create the directory of the sweeper's SQLite study (``storage: sqlite:///<path>``), which SQLite does not;
    returns it (None: no SQLite storage)."""
    storage = config.hydra.sweeper.get("storage")
    if not (isinstance(storage, str) and storage.startswith(SQLITE)):
        return None
    folder = Path(storage[len(SQLITE):]).parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class SweepSetup(Callback):
    """Hydra callback for the launcher presets and the sweeper (see the module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """In the launching process, before the sweep directory or any job exists: refuse a sweep that cannot run
        (one line on stderr, exit status 2), then prepare the sweeper's study storage."""
        entry = str(config.get("task_name", "train"))  # train | evaluate: the command this sweep runs
        reason = (preset_refusal(config, entry) or sweeper_refusal(config) or refusal(config)
                  or objective_refusal(config))
        if reason is not None:
            print(f"difflab-{config.get('task_name', 'train')}: error: {reason}", file=sys.stderr, flush=True)
            sys.exit(2)
        prepare_study_storage(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """In each job's process: its torch (and OpenMP/MKL/BLAS) threads under joblib or submitit, the link to its
        submitit logs, and one log line saying so."""
        launcher = config.hydra.launcher
        kind = launcher_kind(str(launcher.get("_target_", "")))
        job = f"job {config.hydra.job.get('num')}"
        if kind == "joblib":
            cores, n_jobs = usable_cores(), launcher.get("n_jobs")
            set_threads(threads_per_job(n_jobs, cores))
            log.info(f"difflab: joblib {job}: n_jobs={n_jobs} on {cores} cores: torch threads: {_torch_threads()}")
        elif kind.startswith("submitit"):
            cpus = launcher.get("cpus_per_task")
            if cpus:
                set_threads(int(cpus))
            link = link_submitit_logs(Path(config.hydra.runtime.output_dir))
            log.info(f"difflab: {kind} {job}: torch threads: {_torch_threads()}"
                     + (f"; submitit logs in {link}/" if link else ""))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
