"""The report's two tables: ``report.csv`` (one row per job, every value) and ``report.md`` (one row per group:
mean ± std over its finished seeds, then the failed and incomplete jobs, then the figures)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from difflab.reporting.grouping import Group, label, summarise
from difflab.reporting.jobs import FAILED, FINISHED, INCOMPLETE, Job

__all__ = ["job_name", "write_csv", "markdown", "markdown_table", "has_history", "BEST_RULE"]

BEST_RULE = "min; max for inception_score, accuracy, precision, recall"


def job_name(job: Job, out_dir: Path) -> str:
    """The job's directory relative to the report's directory (absolute when it is elsewhere)."""
    try:
        return Path(os.path.relpath(job.path, out_dir.resolve())).as_posix()
    except ValueError:  # another drive
        return str(job.path)


def csv_columns(swept: list[str], metrics: list[str]) -> list[str]:
    return ["job", "status", "step", "error", *swept, *(c for m in metrics for c in (m, f"{m}/best"))]


def write_csv(path: Path, jobs: list[Job], swept: list[str], metrics: list[str], out_dir: Path) -> None:
    """``report.csv``: job, status, step, error, the swept keys, then ``<metric>`` (last) and ``<metric>/best``."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=csv_columns(swept, metrics))
        writer.writeheader()
        for job in jobs:
            row: dict[str, object] = {"job": job_name(job, out_dir), "status": job.status, "step": job.step,
                                      "error": job.error, **{k: job.setting(k) for k in swept}}
            for metric in metrics:
                row[metric], row[f"{metric}/best"] = job.last(metric), job.best(metric)
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _cell(text: object) -> str:
    return str("" if text is None else text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[object]]) -> list[str]:
    """A markdown table's lines (``|`` in a cell escaped)."""
    return ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def has_history(groups: list[Group], metric: str) -> bool:
    """Whether the best value can differ from the last one (some job logged the metric at two steps or more)."""
    return any(len(job.series.get(metric, {})) > 1 for group in groups for job in group.finished)


def markdown(jobs: list[Job], groups: list[Group], keys: list[str], metrics: list[str], swept: list[str],
             out_dir: Path, figures: list[Path], unmatched: list[str], sections: list[str] = ()) -> str:
    """The text of ``report.md``; ``sections``: more lines (e.g. the paired comparisons) after the value tables."""
    counts = {s: sum(job.status == s for job in jobs) for s in (FINISHED, FAILED, INCOMPLETE)}
    lines = [f"# Report: {out_dir.name or out_dir}", "",
             f"{len(jobs)} jobs: {counts[FINISHED]} finished, {counts[FAILED]} failed, "
             f"{counts[INCOMPLETE]} incomplete. "
             f"Swept keys: {', '.join(swept) or 'none'}; grouped by: {', '.join(keys) or 'nothing (one group)'}.",
             "Each cell: mean ± sample std (ddof=1) over a group's finished jobs, n = how many had the metric; "
             "failed and incomplete jobs are left out of the means and listed below.", ""]
    if unmatched:
        lines += [f"Nothing logged matches: {', '.join(unmatched)}.", ""]
    header = [*keys, "finished"]
    lines += ["## Final values", ""]
    if not metrics:
        lines += ["No metric logged yet.", ""]
    rows = [[*g.values, f"{len(g.finished)} of {len(g.jobs)}",
             *(summarise(g.finished, lambda job, m=m: job.last(m)) for m in metrics)] for g in groups]
    lines += [*markdown_table([*header, *metrics], rows), ""]
    best = [m for m in metrics if has_history(groups, m)]
    if best:
        lines += [f"## Best value during training ({BEST_RULE})", ""]
        rows = [[*g.values, f"{len(g.finished)} of {len(g.jobs)}",
                 *(summarise(g.finished, lambda job, m=m: job.best(m)) for m in best)] for g in groups]
        lines += [*markdown_table([*header, *best], rows), ""]
    lines += sections
    left_out = [job for job in jobs if job.status != FINISHED]
    lines += ["## Failed and incomplete jobs", ""]
    if left_out:
        rows = [[job_name(job, out_dir), job.status, job.step, job.error or "", label(keys, g.values)]
                for g in groups for job in g.jobs if job.status != FINISHED]
        lines += [*markdown_table(["job", "status", "step", "error", "group"], rows), ""]
    else:
        lines += ["None: every job finished.", ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{path.stem}]({Path(os.path.relpath(path, out_dir)).as_posix()})" for path in figures] + [""]
    return "\n".join(lines)
