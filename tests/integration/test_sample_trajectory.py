"""difflab-sample save_trajectory=true: the strip, the GIF and the raw trajectory of the first samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import compose_config
from PIL import Image

from difflab.builders import build_module, to_container
from difflab.data import DataFacts
from difflab.errors import ConfigError
from difflab.module import CHECKPOINT_KEY, DiffusionModule
from difflab.sample import sample

pytestmark = pytest.mark.usefixtures("one_thread", "hydra_cleanup")

DIGITS = DataFacts((1, 8, 8), num_classes=10, num_bins=17)
MOONS = DataFacts((2,), num_classes=2, num_bins=None)


def write_checkpoint(path: Path, overrides: list[str], facts: DataFacts) -> Path:
    """An untrained model's checkpoint, as difflab-train writes it (state dict and the run config with data facts)."""
    cfg = compose_config("train", overrides, path.parent / "train")
    run_config = to_container(cfg)
    torch.manual_seed(0)
    module = build_module(cfg, facts, run_config)
    torch.save({"state_dict": module.state_dict(),
                CHECKPOINT_KEY: {"config": run_config, "data_shape": list(facts.shape)}}, path)
    return path


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / "tiny.ckpt"
    return write_checkpoint(path, ["backbone.base_channels=16", "backbone.num_groups=8"], DIGITS)


@pytest.fixture(scope="module")
def moons_ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("moons") / "tiny.ckpt", ["dataset=moons", "backbone=mlp"], MOONS)


def run_sample(ckpt: Path, out: Path, *overrides: str) -> Path:
    sample(compose_config("sample", [f"ckpt_path={ckpt}", "device=cpu", *overrides], out))
    return out


def test_images_strip_gif_and_tensors(digits_ckpt, tmp_path):
    # 6 samples in batches of 4: the 5 followed span both batches
    common = ["n=6", "batch_size=4", "sampler=ddim", "sampler.steps=6"]
    out = run_sample(digits_ckpt, tmp_path / "traj", *common, "save_trajectory=true", "trajectory.num_samples=5",
                     "trajectory.num_frames=4", "trajectory.fps=20")
    samples = torch.load(out / "samples.pt", weights_only=True)
    trajectory = torch.load(out / "trajectory.pt", weights_only=True)
    assert trajectory["xt"].shape == (7, 5, 1, 8, 8) and trajectory["x0"].shape == (6, 5, 1, 8, 8)
    assert trajectory["timesteps"].tolist() == [830, 664, 498, 332, 166, 0]  # leading: k (1000 // 6)
    assert torch.equal(trajectory["xt"][-1], samples[:5])
    # the recorded run is the plain one: the same samples without the trajectory
    plain = run_sample(digits_ckpt, tmp_path / "plain", *common)
    assert torch.equal(torch.load(plain / "samples.pt", weights_only=True), samples)
    assert not (plain / "trajectory.pt").exists()

    strip = Image.open(out / "trajectory.png")
    # 4 columns, 5 rows of 8x8 images upscaled 8 times with 1-px gaps, under a 14-px band of t labels
    assert strip.size == ((4 * 9 + 1) * 8, 14 + (5 * 9 + 1) * 8)
    gif = Image.open(out / "trajectory.gif")
    assert gif.n_frames == 7  # x_T and the state after each of the 6 steps
    assert gif.info["duration"] == 50


def test_two_d_points_show_x0(moons_ckpt, tmp_path):
    out = run_sample(moons_ckpt, tmp_path, "n=16", "sampler=ddpm", "sampler.steps=5", "save_trajectory=true",
                     "trajectory.num_samples=16", "trajectory.show=x0", "trajectory.num_frames=3")
    trajectory = torch.load(out / "trajectory.pt", weights_only=True)
    assert trajectory["xt"].shape == (6, 16, 2) and trajectory["x0"].shape == (5, 16, 2)
    assert torch.equal(trajectory["xt"][-1], torch.load(out / "samples.pt", weights_only=True))
    # one row of 3 scatter plots of 192 px with 1-px gaps, under the band of labels
    assert Image.open(out / "trajectory.png").size == (3 * 193 + 1, 14 + 194)
    assert Image.open(out / "trajectory.gif").n_frames == 5  # one x0 prediction per step


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trajectory.num_samples=9"], r"trajectory.num_samples=9 must be an integer in \[1, 8\] \(n=8"),
        (["trajectory.num_samples=0"], r"trajectory.num_samples=0 must be an integer in \[1, 8\]"),
        (["trajectory.num_frames=1"], r"trajectory.num_frames=1 must be an integer >= 2"),
        (["trajectory.num_frames=9"], r"trajectory.num_frames=9 is more than the 8 states .* <= 8"),
        (["trajectory.num_frames=8", "trajectory.show=x0"], r"num_frames=8 is more than the 7 x0 predictions"),
        (["trajectory.show=noisy"], r"trajectory.show='noisy' is not known; choose one of \['xt', 'x0'\]"),
        (["trajectory.fps=0"], r"trajectory.fps=0 must be a number in \(0, 50\]"),
        (["save_trajectory=maybe"], r"save_trajectory='maybe' must be true or false"),
    ],
    ids=["too_many_samples", "no_samples", "one_frame", "frames_xt", "frames_x0", "show", "fps", "flag"],
)
def test_bad_trajectory_options_stop_before_sampling(overrides, message, digits_ckpt, tmp_path, monkeypatch):
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the options were checked")

    monkeypatch.setattr(DiffusionModule, "sample", no_sampling)
    flag = [] if any(o.startswith("save_trajectory=") for o in overrides) else ["save_trajectory=true"]
    with pytest.raises(ConfigError, match=message):
        run_sample(digits_ckpt, tmp_path, "n=8", "sampler.steps=7", *flag, *overrides)
