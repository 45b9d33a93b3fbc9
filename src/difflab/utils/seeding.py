"""Seeds derived from (seed, rank, step, ...) so that randomness never depends on batch size, GPU count or resumes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["derive_seed", "rank_seed", "per_sample_generators"]


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of the integer ``keys`` (NumPy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def rank_seed(seed: int, rank: int, world_size: int) -> int:
    """The per-rank training seed ``seed * world_size + rank``."""
    return seed * world_size + rank


def per_sample_generators(seed: int, indices: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample, seeded from (seed, sample index): sample i is the same in any batch."""
    return [torch.Generator(device=device).manual_seed(derive_seed(seed, int(i))) for i in indices]
