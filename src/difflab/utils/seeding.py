"""Every stream of randomness of a run is seeded by :func:`derive_seed` from (seed, stream, keys), except the initial
weights (``pl.seed_everything(seed)`` in difflab-train) and the fixed dataset seeds (``data_seed``, ``split_seed``).

The keys are what the stream depends on and nothing else: a training step's (rank, step, micro-batch), a
validation batch's index, an epoch's number, a generated sample's index. So randomness never depends on the
batch size or on resuming; a generated sample never depends on the number of processes either. Training
rank r of any world size draws the same stream (its batches, however, shard the data by the world size).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Sequence

import numpy as np
import torch

__all__ = ["Stream", "derive_seed", "per_sample_generators"]


class Stream(IntEnum):
    """What a seed is for: each stream gets its own key, so no two streams ever share a seed."""

    SAMPLE = 0       # the noise of generated sample i (initial and every step)
    TRAIN_STEP = 1   # timesteps, noise, label dropout and network dropout of a training step
    VALIDATION = 2   # the fixed timesteps and noise of a validation batch
    DATA_ORDER = 3   # the permutation of the training set in an epoch
    FLIP = 4         # which images of a training batch are mirrored
    SCORING = 5      # KID's random subsets, the likelihood bound's timestep draws


def derive_seed(seed: int, stream: Stream, *keys: int) -> int:
    """A 63-bit seed that is a pure function of ``seed``, ``stream`` and the integer ``keys`` (NumPy's
    SeedSequence hashing: nearby inputs give unrelated seeds)."""
    entropy = [int(k) & 0xFFFFFFFFFFFFFFFF for k in (seed, int(stream), *keys)]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def per_sample_generators(
    seed: int, indices: Sequence[int], device: torch.device | str = "cpu"
) -> list[torch.Generator]:
    """One generator per sample, seeded from (seed, sample index): sample i is the same in any batch."""
    return [torch.Generator(device=device).manual_seed(derive_seed(seed, Stream.SAMPLE, int(i))) for i in indices]
