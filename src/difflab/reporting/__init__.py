"""difflab-report's parts: find and read the jobs of sweeps, aggregate them into a table, compare groups pair by
pair (``paired_by``), draw figures.

Plain Python and matplotlib (no torch or Lightning), so a report is quick to make and the parts can
be used from a notebook:

    from difflab.reporting import find_jobs, read_job
    jobs = [read_job(path) for path in find_jobs(["outputs/train/multiruns/2026-11-30_22-40-00"])]
"""

from difflab.reporting.jobs import Job, find_jobs, read_job

__all__ = ["Job", "find_jobs", "read_job"]
