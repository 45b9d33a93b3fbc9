"""Which frames of a trajectory the strip shows, and how they are labelled."""

from __future__ import annotations

import pytest
import torch

from difflab.samplers.trajectory import Trajectory
from difflab.utils.trajectory_views import evenly_spaced, trajectory_strip, view_frames


def test_evenly_spaced_frames_include_the_first_and_the_last():
    assert evenly_spaced(51, 8) == [0, 7, 14, 21, 29, 36, 43, 50]
    assert evenly_spaced(5, 5) == [0, 1, 2, 3, 4]
    assert evenly_spaced(7, 2) == [0, 6]
    for total in range(2, 40):
        for num in range(2, total + 1):
            picked = evenly_spaced(total, num)
            assert picked[0] == 0 and picked[-1] == total - 1 and len(picked) == num
            assert all(b > a for a, b in zip(picked, picked[1:]))
    with pytest.raises(ValueError, match="cannot pick 6 evenly spaced frames of 5"):
        evenly_spaced(5, 6)


def test_views_and_their_labels():
    trajectory = Trajectory(xt=torch.zeros(4, 2, 2), x0=torch.ones(3, 2, 2), timesteps=torch.tensor([900, 500, 100]))
    frames, labels, captions = view_frames(trajectory, "xt")
    assert frames.shape[0] == 4 and labels == ["t=900", "t=500", "t=100", "final"]
    assert captions[0] == "x_t  step 0/3  t=900" and captions[-1] == "x_t  step 3/3  final"
    frames, labels, captions = view_frames(trajectory, "x0")
    assert torch.equal(frames, trajectory.x0) and labels == ["t=900", "t=500", "t=100"]
    assert captions[0] == "x0 prediction  step 1/3  t=900"


def test_strip_of_rgb_images_has_one_row_per_sample():
    frames = torch.rand(3, 2, 3, 5, 7) * 2 - 1  # 3 steps of 2 RGB 5x7 images: upscaled 64 // 7 = 9 times
    strip = trajectory_strip(frames, ["a", "b", "c"])
    assert strip.shape == (14 + (2 * 6 + 1) * 9, (3 * 8 + 1) * 9, 3)
