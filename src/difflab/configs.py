"""Hydra plumbing of the entry points: where the configs live (inside the installed package, or in the checkout),
the ``difflab_cwd`` resolver, the check that the output directory can be created, and the job's overrides.

A wheel (``pip install .``, ``pip install git+...``, a cluster image) carries the repository's top-level
``conf/`` tree inside the package as ``difflab/conf``. An editable install (``pip install -e .``) has no such
copy and reads the checkout's ``conf/`` directly, so an edited YAML file takes effect without reinstalling.

Users add config groups and experiments of their own the Hydra way, without touching these files:
``difflab-train --config-dir /my/conf experiment=mine`` or
``difflab-train 'hydra.searchpath=[file:///my/conf]' experiment=mine``.
"""

from __future__ import annotations

import os
import sys
import warnings
from importlib.resources import files
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from difflab.errors import ConfigError

# difflab's launcher presets (conf/hydra/launcher/) restate the plugins' configs of the same name, which Hydra 1.3 still
# merges as a schema with a deprecation warning on every launch
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")

__all__ = [
    "CONFIG_DIR", "WritableOutputCheck", "config_dir", "preset_refusal", "refuse_other_presets", "task_overrides",
]

if not OmegaConf.has_resolver("difflab_cwd"):  # usable before Hydra sets ${hydra:runtime.cwd} (sweep dirs)
    OmegaConf.register_new_resolver("difflab_cwd", os.getcwd)

_MARKER = "train.yaml"  # every config tree difflab can run from has it


def config_dir() -> str:
    """The absolute path of the directory holding ``train.yaml``, ``sample.yaml``, ``evaluate.yaml`` and the groups.

    Looked up in this order:

    1. ``difflab/conf`` inside the installed package (a wheel install);
    2. ``conf/`` at the top of the source checkout the package is imported from (``src/difflab`` ->
       ``conf``; an editable install or ``PYTHONPATH=src``).

    Raises:
        FileNotFoundError: neither exists (e.g. a wheel built without its configs), naming both places looked in.
    """
    package = files("difflab")
    packaged = package / "conf"
    if packaged.is_dir() and (packaged / _MARKER).is_file():
        return str(Path(str(packaged)).resolve())
    checkout = Path(str(package)).resolve().parents[1] / "conf"
    if (checkout / _MARKER).is_file():
        return str(checkout)
    raise FileNotFoundError(
        f"difflab cannot find its Hydra configs: neither {packaged} (a wheel install) nor {checkout} (a source "
        f"checkout) holds {_MARKER}. Reinstall difflab (`pip install difflab-<version>.whl` or `pip install -e .` "
        "from a checkout)."
    )


CONFIG_DIR = config_dir()


def task_overrides() -> list[str]:
    """The command-line overrides of this Hydra job (empty outside Hydra)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def preset_refusal(cfg: DictConfig, entry: str) -> str | None:
    """Why ``cfg``'s experiment preset cannot run under the ``entry`` command (``train``, ``evaluate``), or None.

    A preset made for another command says so with ``preset_for:`` (an evaluation study's preset composed into
    difflab-train would otherwise train with a checkpoint path meant for scoring)."""
    wanted = cfg.get("preset_for")
    if wanted is None or wanted == entry:
        return None
    hydra = cfg.get("hydra") or (HydraConfig.get() if HydraConfig.initialized() else None)  # multirun: in cfg
    name = hydra.runtime.choices.get("experiment") if hydra is not None else None
    preset = f"experiment={name}" if name else "this preset"
    return f"{preset} is a difflab-{wanted} preset (preset_for: {wanted}); run it with difflab-{wanted} -m {preset}"


def refuse_other_presets(cfg: DictConfig, entry: str) -> None:
    """Raise a ConfigError when ``cfg``'s experiment preset is made for another command (:func:`preset_refusal`)."""
    reason = preset_refusal(cfg, entry)
    if reason is not None:
        raise ConfigError(reason)


def unwritable_reason(directory: Path) -> str | None:
    """Why ``directory`` cannot be created and written (None when it can): checked on its nearest existing ancestor."""
    probe = directory
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


class WritableOutputCheck(Callback):
    """Hydra callback: before Hydra creates the run (or sweep) directory, make sure it can; otherwise print one
    line naming the directory and exit with status 2 instead of Hydra's traceback."""

    def _check(self, directory: str, key: str) -> None:
        reason = unwritable_reason(Path(directory))
        if reason is not None:
            print(f"difflab-{self.task}: error: {key}={directory!r} cannot be created: {reason}; "
                  "choose a writable directory",
                  file=sys.stderr, flush=True)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        self.task = config.get("task_name", "train")
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        self.task = config.get("task_name", "train")
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")
