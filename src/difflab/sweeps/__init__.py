"""Sweeps: the jobs of a ``--multirun``: their status (status.py), overrides (overrides.py), W&B identity
(identity.py), launchers (launchers.py) and hyper-parameter search (search.py)."""
