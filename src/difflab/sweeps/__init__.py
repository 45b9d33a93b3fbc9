"""Sweeps: the jobs of a `--multirun` (their status, launchers, search presets) and who each job is on W&B."""

from difflab.sweeps.identity import RunIdentity, run_identity

__all__ = ["RunIdentity", "run_identity"]
