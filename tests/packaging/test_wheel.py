"""The wheel carries everything a run needs: built from the checkout, installed outside it, run from an empty directory.

The wheel is installed without its dependencies into a fresh virtual environment that sees the test
interpreter's site-packages through a ``.pth`` file (torch and the rest are not installed again). Lines of a
``.pth`` file are appended to ``sys.path``, but ``.pth`` files inside such a directory are not processed, so
the editable install of the checkout (its own ``.pth``) stays out of that environment: difflab, its configs
and its shipped weights come from the wheel alone.
"""

from __future__ import annotations

import importlib.util
import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

USER_EXPERIMENT = """\
# @package _global_
# A user's own preset, kept outside the difflab package: tiny moons, 4 steps.
defaults:
  - override /dataset: moons
  - override /backbone: mlp
  - override /metrics: []

dataset:
  num_samples: 256
  batch_size: 64
backbone:
  hidden_dim: 16
  num_layers: 1
  time_embed_dim: 16
schedule:
  num_timesteps: 50
sampler:
  steps: 2
trainer:
  max_steps: 4
  val_check_interval: 4
  limit_val_batches: 1
callbacks:
  model_checkpoint:
    every_n_train_steps: 4
  sample_grid:
    every_n_steps: 4
    num_samples: 16
"""

USER_SAMPLER = """\
# A user's own option of the sampler group: a 2-step DDIM.
_target_: difflab.samplers.make_sampler
_partial_: true
name: ddim
steps: 2
eta: 0.0
timestep_spacing: trailing
clip_sample: false
"""


def _check(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; fail with its output unless it exits 0."""
    proc = subprocess.run(command, capture_output=True, text=True, **kwargs)
    shown = " ".join(command)
    assert proc.returncode == 0, f"{shown}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


class Installed:
    """A virtual environment holding the wheel, an empty working directory and a user config directory."""

    def __init__(self, root: Path) -> None:
        self.venv = root / "venv"
        self.bin = self.venv / "bin"
        self.workdir = root / "work"
        self.user_conf = root / "my_conf"

    def run(self, program: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``program`` (a console script or ``python`` of the venv) in the empty working directory."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DIFFLAB_ROOT", "PYTHONHOME")}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", HYDRA_FULL_ERROR="1")
        return _check([str(self.bin / program), *args], cwd=self.workdir, env=env, timeout=timeout)


def _build_wheel(dest: Path) -> Path:
    """``pip wheel`` the checkout (without build isolation when the build backend is installed: the dev extra)."""
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(dest), str(REPO_ROOT)]
    _check(command)
    (wheel,) = dest.glob("difflab-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel_install")
    wheel = _build_wheel(root / "dist")
    env = Installed(root)
    venv.create(env.venv, with_pip=False, symlinks=os.name != "nt")
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = _check([str(env.bin / "python"), "-c", query]).stdout
    # The test interpreter's packages (torch, lightning, hydra, ...), without processing their .pth files.
    Path(purelib.strip(), "_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(env.bin / "python"), "install", "--no-deps", "--no-index"]
    _check([*install, "-q", str(wheel)])
    env.workdir.mkdir()
    (env.user_conf / "experiment").mkdir(parents=True)
    (env.user_conf / "experiment" / "my_moons.yaml").write_text(USER_EXPERIMENT)
    (env.user_conf / "sampler").mkdir()
    (env.user_conf / "sampler" / "my_ddim.yaml").write_text(USER_SAMPLER)
    return env


def test_difflab_and_its_configs_come_from_the_wheel(installed: Installed) -> None:
    code = "import difflab, difflab.configs as c; print(difflab.__file__); print(c.CONFIG_DIR)"
    out = installed.run("python", "-c", code).stdout
    module_file, config_dir = (Path(line).resolve() for line in out.splitlines())
    assert installed.venv.resolve() in module_file.parents, f"difflab imported from {module_file}, not from the wheel"
    assert REPO_ROOT not in module_file.parents and REPO_ROOT not in config_dir.parents
    assert config_dir == module_file.parent / "conf"
    assert (config_dir / "train.yaml").is_file() and (config_dir / "experiment" / "moons.yaml").is_file()
    assert (module_file.parent / "metrics" / "weights" / "digits_lenet.pt").is_file()


def test_cfg_job_prints_the_composed_config_from_an_empty_directory(installed: Installed) -> None:
    out = installed.run("difflab-train", "--cfg", "job").stdout
    assert "task_name: train" in out and "_target_: difflab.data.DigitsDataModule" in out
    assert "_target_: difflab.backbones.UNet" in out
    assert not (installed.workdir / "outputs").exists(), "--cfg job wrote files"


def test_fast_dev_run_writes_under_the_working_directory(installed: Installed) -> None:
    # The FID at its smallest: it still loads the digits LeNet shipped inside the wheel.
    installed.run("difflab-train", "debug=fdr", "metrics.fid.num_samples=64", "evaluation.sampler.steps=2")
    (run,) = (installed.workdir / "outputs" / "train" / "runs").iterdir()
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "resolved_config.yaml").is_file()
    history = json.loads((run / "evaluation.json").read_text())["history"]
    assert any("val/fid_digits-lenet_n64_dpmpp2m2" in values for _, values in history)


def test_user_config_dir_experiment_then_sample(installed: Installed) -> None:
    # --config-dir for the training run, hydra.searchpath for the sampling run (both add to difflab's own configs).
    installed.run("difflab-train", "--config-dir", str(installed.user_conf), "experiment=my_moons",
                  "hydra.run.dir=outputs/my_moons")
    run = installed.workdir / "outputs" / "my_moons"
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert "max_steps: 4" in (run / "resolved_config.yaml").read_text()

    installed.run("difflab-sample", f"hydra.searchpath=['file://{installed.user_conf}']", "sampler=my_ddim",
                  f"ckpt_path={ckpt}", "n=4", "hydra.run.dir=outputs/my_samples")
    samples = installed.workdir / "outputs" / "my_samples"
    assert (samples / "samples.pt").is_file() and (samples / "samples.png").is_file()
    assert "steps: 2" in (samples / ".hydra" / "config.yaml").read_text()
