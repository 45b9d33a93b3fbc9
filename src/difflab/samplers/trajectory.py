"""Record a sampler's run: the states x_t and the x0 predictions of a few samples at every step.

    recorder = TrajectoryRecorder(8)
    samples = sampler.sample(model_fn, x_T, callback=recorder)   # or DiffusionModule.sample(..., callback=recorder)
    trajectory = recorder.trajectory()                           # trajectory.xt[-1] equals samples[:8]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from difflab.utils.checks import check_int

__all__ = ["Trajectory", "TrajectoryRecorder"]


@dataclass(frozen=True)
class Trajectory:
    """The states of k samples along a sampler's N steps (CPU tensors).

    xt:        [N + 1, k, *shape]  xt[0] is the start noise x_T, xt[i] the state after step i (xt[N]: the samples)
    x0:        [N, k, *shape]      x0[i - 1] is the x0 prediction step i made
    timesteps: [N] long            timesteps[i - 1] is step i's model timestep (the one xt[i - 1] was fed at)
    """

    xt: torch.Tensor
    x0: torch.Tensor
    timesteps: torch.Tensor

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.numel())

    @classmethod
    def cat(cls, parts: Sequence[Trajectory]) -> Trajectory:
        """The trajectories of consecutive batches as one (samples concatenated; all must share the timesteps)."""
        if not parts:
            raise ValueError("Trajectory.cat needs at least one trajectory")
        for part in parts[1:]:
            if not torch.equal(part.timesteps, parts[0].timesteps):
                raise ValueError(
                    f"cannot join trajectories of different timesteps: {parts[0].timesteps.tolist()} and "
                    f"{part.timesteps.tolist()}"
                )
        return cls(torch.cat([p.xt for p in parts], 1), torch.cat([p.x0 for p in parts], 1), parts[0].timesteps)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """``{"xt", "x0", "timesteps"}``: what ``torch.save`` writes (loads with ``weights_only=True``)."""
        return {"xt": self.xt, "x0": self.x0, "timesteps": self.timesteps}


class TrajectoryRecorder:
    """A sampler callback (:data:`difflab.samplers.base.StepCallback`) keeping copies of the first ``count`` samples
    of the batch at every step. Use one recorder per ``sample`` call."""

    def __init__(self, count: int) -> None:
        self.count = check_int("count", count, 1)
        self._xt: list[torch.Tensor] = []
        self._x0: list[torch.Tensor] = []
        self._timesteps: list[int] = []

    def __call__(self, i: int, t: int, x: torch.Tensor, x0: torch.Tensor | None) -> None:
        if i != len(self._xt):
            raise RuntimeError(
                f"step {i} was reported after {len(self._xt)} states: a TrajectoryRecorder records one sample() call"
            )
        if x.shape[0] < self.count:
            raise ValueError(f"the batch has {x.shape[0]} samples; this recorder keeps the first {self.count}")
        self._xt.append(x[: self.count].detach().to("cpu", copy=True))
        if x0 is not None:
            self._x0.append(x0[: self.count].detach().to("cpu", copy=True))
            self._timesteps.append(int(t))

    def trajectory(self) -> Trajectory:
        """What was recorded, as a :class:`Trajectory`."""
        if len(self._xt) < 2:
            raise RuntimeError("no sampler step was recorded: pass the recorder as the sampler's callback")
        return Trajectory(torch.stack(self._xt), torch.stack(self._x0), torch.tensor(self._timesteps))
