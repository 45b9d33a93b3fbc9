"""Shared test helpers: compose difflab configs in-process, run the console entry points as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from difflab.configs import CONFIG_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N (the default, see pyproject.toml): N workers side by side, one thread each, subprocesses included;
    # N workers each spinning two threads on two cores would slow every one of them down many times
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with ``overrides`` as ``@hydra.main`` would, writing into ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name=config_name, overrides=[*overrides, f"hydra.run.dir={output_dir}"],
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_cli(
    module: str, *args: str, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m difflab.<module> args...`` and return the completed process (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", f"difflab.{module}", *args],
        cwd=cwd or REPO_ROOT, env=cli_env(cwd or REPO_ROOT, env), capture_output=True, text=True, timeout=timeout,
    )


def cli_env(root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``difflab-*`` command run by a test: ``DIFFLAB_ROOT=root``, warnings off, ``env`` on
    top, and no HYDRA_FULL_ERROR (the one-line errors are what the tests read)."""
    full_env = {**os.environ, "DIFFLAB_ROOT": str(root), "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return full_env


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: tiny tensor work gains nothing from two, and spin-waiting threads
    are many times slower when the two cores are shared with other processes."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def hydra_cleanup():
    """Clear Hydra's global state after a test that composed configs."""
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def hydra_job_state(hydra_cleanup):
    """Put back Hydra's job state (HydraConfig) as it was before a test that set up or ran jobs of a sweep."""
    previous = HydraConfig.instance().cfg
    yield
    HydraConfig.instance().cfg = previous


@pytest.fixture(scope="module")
def digits_splits():
    """((x_train, y_train), (x_val, y_val)) of the digits data module: images in [-1, 1], labels."""
    from difflab.data import DigitsDataModule

    dm = DigitsDataModule()
    dm.setup()
    return dm.train_dataset.tensors, dm.val_dataset.tensors


def code_running_pickle(marker: Path, payload_key: str) -> bytes:
    """Pickled ``{payload_key: obj}`` whose unpickling would create the file ``marker`` (a stand-in for any code)."""
    import pickle

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return pickle.dumps({payload_key: Exploit(), "state_dict": {}})
