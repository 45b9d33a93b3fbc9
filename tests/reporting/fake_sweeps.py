"""Hand-written sweep directories for the report tests (the files difflab-train and difflab-evaluate write, with
known values, and the truth they encode: what a reader of the files must find), and checks of a report's files."""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

W2 = "val/two_d_n1000_dpmpp2m20"
LOSS = "train/loss"


def write_job(job_dir: Path, overrides: list[str], status: dict | None = None) -> Path:
    (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status is not None:
        (job_dir / "status.json").write_text(json.dumps({"error": None, "metrics": {}, **status}))
    return job_dir


def write_csv(path: Path, rows: list[dict], columns: list[str], truncate_last: bool = False) -> None:
    """A Lightning-style sparse CSV (``epoch, step, <metrics>``); ``truncate_last`` cuts the last line in half,
    as a reader sees a file being appended to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "step", *columns])
        writer.writeheader()
        writer.writerows(rows)
    if truncate_last:
        text = path.read_text()
        last = text.rstrip("\n").rsplit("\n", 1)[1]
        path.write_text(text[: len(text) - len(last) // 2 - 1])


def rows_of(series: dict[str, dict[int, float]]) -> list[dict]:
    """Sparse rows: one row per (metric, step), as Lightning writes values logged at different moments."""
    return [{"epoch": 0, "step": step, name: repr(value)} for name, points in series.items()
            for step, value in sorted(points.items())]


def training_sweep(root: Path, seed: int = 0) -> dict:
    """A training sweep ``schedule=linear,cosine seed=0,1,2`` (+ a job of an older difflab without status.json):

    0,1,3,4: finished. 1 was resumed in its own directory: ``metrics.1.csv`` holds its first attempt (step 10 once,
    and steps 20, 30 with values the resumed run logged again: the later file wins); its step-10 loss is its best.
    2: failed at step 20. 5: running (status step 0, its CSV's last line half written). 6 (cosine, seed=3): no
    status.json and no final file, i.e. incomplete.
    Returns {job name: {"schedule", "seed", "status", "step", "error", "series"}}: what a reader must find.
    """
    rng = np.random.default_rng(seed)
    truth: dict = {}
    plan = [("linear", 0, "finished"), ("linear", 1, "resumed"), ("linear", 2, "failed"),
            ("cosine", 0, "finished"), ("cosine", 1, "finished"), ("cosine", 2, "running"), ("cosine", 3, "legacy")]
    for number, (schedule, job_seed, fate) in enumerate(plan):
        job = root / str(number)
        last_step = {"failed": 20, "running": 20, "legacy": 10}.get(fate, 40)
        loss = {s: float(rng.uniform(0.1, 1.0)) for s in range(10, last_step + 1, 10)}
        w2 = {s: float(rng.uniform(0.05, 0.5)) for s in range(20, last_step + 1, 20)}
        series = {LOSS: loss, W2: w2}
        overrides = ["experiment=moons", f"schedule={schedule}", f"seed={job_seed}", "trainer.max_steps=40"]
        error = "loss is nan at step 20: the run stopped there" if fate == "failed" else None
        if fate == "resumed":
            overrides.append("ckpt_path=last")  # resumes a training job: not a swept key
            loss[10] = 0.05
        status = {"task": "train", "overrides": overrides, "step": 0 if fate == "running" else last_step,
                  "status": {"resumed": "finished", "legacy": None}.get(fate, fate), "error": error}
        write_job(job, overrides, None if fate == "legacy" else status)
        if fate == "resumed":  # smaller stale values: a reader letting the first attempt win would report them
            stale = {LOSS: {10: loss[10], 20: loss[20] / 100, 30: loss[30] / 100}, W2: {20: w2[20] / 100}}
            write_csv(job / "csv" / "metrics.1.csv", rows_of(stale), [LOSS, W2])
            write_csv(job / "csv" / "metrics.csv",
                      rows_of({LOSS: {s: v for s, v in loss.items() if s > 10}, W2: w2}), [LOSS, W2])
        elif fate == "running":  # the last row (step 20's W2) is cut in the middle of its number
            write_csv(job / "csv" / "metrics.csv", rows_of(series), [LOSS, W2], truncate_last=True)
            series = {LOSS: loss, W2: {}}
        else:
            write_csv(job / "csv" / "metrics.csv", rows_of(series), [LOSS, W2])
        if fate in ("finished", "resumed"):
            history = [[s, {W2: v}] for s, v in sorted(w2.items())]
            (job / "evaluation.json").write_text(json.dumps({"evaluation_seconds": 1.0, "history": history}))
        truth[str(number)] = {"schedule": schedule, "seed": job_seed, "error": error, "series": series,
                              "status": {"resumed": "finished", "legacy": "incomplete", "running": "incomplete"}
                              .get(fate, fate), "step": last_step}
    return truth


def evaluation_sweep(root: Path, seed: int = 1) -> dict:
    """An evaluation sweep of one checkpoint, ``sampler.steps=10,20,40`` x ``seed=0,1`` (the seeds averaged), one
    job failed. Returns {job name: {"steps", "status", "value", "error"}}."""
    rng = np.random.default_rng(seed)
    truth: dict = {}
    number = 0
    for steps in (10, 20, 40):
        for sample_seed in (0, 1):
            job = root / str(number)
            overrides = ["ckpt_path=/runs/a/checkpoints/last.ckpt", f"sampler.steps={steps}", f"seed={sample_seed}"]
            failed = steps == 40 and sample_seed == 1
            name = f"val/two_d_n1000_dpmpp2m{steps}"
            value = float(rng.uniform(0.05, 0.5))
            write_job(job, overrides, {"task": "evaluate", "overrides": overrides, "step": 0 if failed else 3000,
                                       "status": "failed" if failed else "finished",
                                       "error": "CUDA out of memory\nTraceback..." if failed else None,
                                       "metrics": {} if failed else {name: value}})
            if not failed:
                row = {"ckpt_path": overrides[0].split("=", 1)[1], "step": 3000, "seed": sample_seed,
                       "sampler.name": "dpmpp_2m", "sampler.steps": steps, "two_d.num_samples": 1000, "two_d": value,
                       "seconds": 0.1, "metric_names": json.dumps([name])}
                (job / "results.json").write_text(json.dumps([row]))
            truth[str(number)] = {"steps": steps, "status": "failed" if failed else "finished",
                                  "value": None if failed else value, "error": "CUDA out of memory" if failed else None}
            number += 1
    return truth


CELL = re.compile(r"^(?P<mean>[-+0-9.e]+)(?: ± (?P<std>[-+0-9.e]+))? \(n=(?P<n>\d+)\)$")


def md_table(text: str, heading: str) -> list[dict[str, str]]:
    """The rows of the markdown table under ``## heading`` as dicts."""
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")))) for line in lines[2:]]


def assert_cell(cell: str, values: list[float]) -> None:
    """``mean ± std (n=K)`` (``mean (n=1)``) agrees with the values, to the digits printed."""
    match = CELL.match(cell)
    assert match, cell
    assert int(match["n"]) == len(values)
    assert float(match["mean"]) == pytest.approx(statistics.mean(values), rel=1e-3)
    if len(values) == 1:
        assert match["std"] is None
    else:
        assert float(match["std"]) == pytest.approx(statistics.stdev(values), rel=0.05)  # sample std, ddof=1


def assert_png(path: Path) -> None:
    """A valid PNG image of non-trivial size."""
    assert path.is_file() and path.stat().st_size > 5_000, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 200


SCHEDULES, WEIGHTINGS = ("linear", "cosine", "sigmoid"), ("uniform", "min_snr")


def factorial_sweep(root: Path, seed: int = 2) -> dict:
    """A training sweep ``schedule=linear,cosine,sigmoid objective.weighting=uniform,min_snr seed=0,1,2``, plus
    seed 3 for (linear, uniform) only (a job without a partner elsewhere) and (cosine, min_snr, seed 2) failed.
    W2 is logged at steps 20 and 40 (its best is the min of the two), the loss at 10..40.
    Returns {job name: {"schedule", "objective.weighting", "seed", "status", "series"}}."""
    rng = np.random.default_rng(seed)
    plan = [(s, w, k) for s in SCHEDULES for w in WEIGHTINGS for k in range(3)] + [("linear", "uniform", 3)]
    truth: dict = {}
    for number, (schedule, weighting, job_seed) in enumerate(plan):
        job = root / str(number)
        overrides = [f"schedule={schedule}", f"objective.weighting={weighting}", f"seed={job_seed}"]
        failed = (schedule, weighting, job_seed) == ("cosine", "min_snr", 2)
        shift = 0.05 * SCHEDULES.index(schedule) + 0.02 * WEIGHTINGS.index(weighting)  # a real effect + seed noise
        series = {W2: {s: float(0.2 + shift + rng.normal(0, 0.03)) for s in (20, 40)},
                  LOSS: {s: float(rng.uniform(0.1, 1.0)) for s in (10, 20, 30, 40)}}
        write_job(job, overrides, {"task": "train", "overrides": overrides, "step": 40,
                                   "status": "failed" if failed else "finished",
                                   "error": "loss is nan" if failed else None})
        write_csv(job / "csv" / "metrics.csv", rows_of(series), [LOSS, W2])
        truth[str(number)] = {"schedule": schedule, "objective.weighting": weighting, "seed": job_seed,
                              "status": "failed" if failed else "finished", "series": series}
    return truth


def checkpoint_sweep(root: Path, seed: int = 3) -> dict:
    """Three training runs (seeds 0, 1, 2; only their config files and an empty checkpoint) under
    ``root/outputs/train/multiruns/d/<seed>``, and an evaluation sweep of their ``last.ckpt`` (relative paths, as
    typed in ``root``) x ``sampler.eta=0,1`` x ``sampler.steps=10,20`` in ``root/eval``.
    Returns {job name: {"ckpt_path", "train.seed", "sampler.eta", "sampler.steps", "value"}}."""
    rng = np.random.default_rng(seed)
    ckpts = []
    for train_seed in range(3):
        run = root / "outputs" / "train" / "multiruns" / "d" / str(train_seed)
        overrides = ["experiment=moons", f"seed={train_seed}"]
        write_job(run, overrides, {"task": "train", "overrides": overrides, "step": 3000, "status": "finished"})
        (run / "resolved_config.yaml").write_text(yaml.safe_dump({"seed": train_seed, "schedule": {"name": "cosine"}}))
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
        ckpts.append(str(run.relative_to(root) / "checkpoints" / "last.ckpt"))
    truth: dict = {}
    number = 0
    for train_seed, ckpt in enumerate(ckpts):
        for eta in (0, 1):
            for steps in (10, 20):
                job = root / "eval" / str(number)
                overrides = [f"ckpt_path={ckpt}", f"sampler.eta={eta}", f"sampler.steps={steps}"]
                value = float(0.3 - 0.1 * eta + 0.01 * train_seed + rng.normal(0, 0.02))
                write_job(job, overrides, {"task": "evaluate", "overrides": overrides, "step": 3000,
                                           "status": "finished"})
                (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": str(root)}}}))
                row = {"ckpt_path": ckpt, "step": 3000, "sampler.eta": eta, "sampler.steps": steps, "nfe": steps,
                       "two_d": value, "metric_names": json.dumps([f"val/two_d_n1000_ddim{steps}"])}
                (job / "results.json").write_text(json.dumps([row]))
                # difflab-evaluate's copy of the checkpoint's training config
                (job / "trained_config.yaml").write_text(yaml.safe_dump({"seed": train_seed, "objective": {"x": 1}}))
                truth[str(number)] = {"ckpt_path": ckpt, "train.seed": train_seed, "sampler.eta": eta,
                                      "sampler.steps": steps, "value": value}
                number += 1
    return truth


def md_subtable(text: str, heading: str) -> list[dict[str, str]]:
    """The rows of the markdown table under the ``### `` heading that starts with ``heading``, as dicts."""
    section = text.split(f"### {heading}", 1)[1].split("\n", 1)[1].split("\n#", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")))) for line in lines[2:]]
