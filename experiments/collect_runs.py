"""Copy a sweep's per-job results (no checkpoints) into a study folder, so that difflab-report can regenerate the
study's tables and figures from what is committed.

    python experiments/collect_runs.py outputs/train/sweeps/moons_ten_steps experiments/moons_ten_steps/runs/train

Kept per job: .hydra/{overrides,config}.yaml, status.json, csv/metrics*.csv, evaluation.json, results.json/.csv,
resolved_config.yaml, trained_config.yaml (an evaluation's copy of its checkpoint's training config); at the sweep's
top: multirun.yaml and results.json/.csv (evaluation).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

JOB_FILES = (".hydra/overrides.yaml", ".hydra/config.yaml", "status.json", "evaluation.json", "results.json",
             "results.csv", "resolved_config.yaml", "trained_config.yaml")
SWEEP_FILES = ("multirun.yaml", "results.json", "results.csv")


def collect(sweep: Path, destination: Path) -> int:
    """Copy the kept files of every job of ``sweep`` (a directory of job directories); return the job count."""
    jobs = sorted((p for p in sweep.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()),
                  key=lambda p: (len(p.name), p.name))
    if not jobs:
        raise SystemExit(f"collect_runs: {sweep} holds no job (no <job>/.hydra/overrides.yaml)")
    for job in jobs:
        names = [*JOB_FILES, *(str(p.relative_to(job)) for p in job.glob("csv/metrics*.csv"))]
        for name in names:
            if (job / name).is_file():
                (destination / job.name / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(job / name, destination / job.name / name)
    for name in SWEEP_FILES:
        if (sweep / name).is_file():
            destination.mkdir(parents=True, exist_ok=True)
            shutil.copy2(sweep / name, destination / name)
    return len(jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the sweep directory (outputs/<task>/sweeps/<name>)")
    parser.add_argument("destination", type=Path, help="where the jobs' files go (experiments/<study>/runs/<task>)")
    args = parser.parse_args()
    print(f"collect_runs: {collect(args.sweep, args.destination)} jobs -> {args.destination}")


if __name__ == "__main__":
    main()
