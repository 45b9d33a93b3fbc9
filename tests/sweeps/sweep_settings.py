"""Settings shared by the sweep tests: a tiny moons run (20 steps, scored at steps 10 and 20, 200 points; the final
sample grid drawn in 20 DDPM steps, not the preset's 1,000)."""

from __future__ import annotations

import json
from pathlib import Path

TINY = ["experiment=moons", "trainer.max_steps=20", "evaluation.every_n_steps=10",
        "callbacks.sample_grid.num_samples=16", "callbacks.rich_progress_bar=null", "dataset.num_samples=2000",
        "metrics.two_d.num_samples=200", "sampler.steps=20"]
METRIC = "val/two_d_n200_dpmpp2m20"  # the monitored metric of TINY: W2 of 200 points, DPM-Solver++(2M) 20 steps
ONE_THREAD = {"OMP_NUM_THREADS": "1"}



def job_dirs(sweep_dir: Path) -> list[Path]:
    """The numbered job directories of a sweep, in job order."""
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def status(job_dir: Path) -> dict:
    return json.loads((job_dir / "status.json").read_text())


def scored(job_dir: Path, metric: str = METRIC) -> list[float]:
    """The values of ``metric`` in the job's evaluation.json history, in step order."""
    history = json.loads((job_dir / "evaluation.json").read_text())["history"]
    return [values[metric] for _, values in history if metric in values]
