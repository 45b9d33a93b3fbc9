"""difflab-report: one table and figures for one or more sweeps (training or evaluation, finished or running).

    difflab-report sweeps=outputs/train/multiruns/2026-11-30_22-40-00
    difflab-report sweeps=[outputs/train/multiruns/A,outputs/train/multiruns/B] select=[val/two_d*] group_by=[schedule]

Writes ``report.csv`` (one row per job), ``report.md`` (mean ± std per group over the finished seeds; with
``paired_by=seed`` the paired comparisons of the groups differing in one key, also in ``paired.csv``; the failed and
incomplete jobs listed) and PNG figures into the sweep directory (or ``out_dir``), and prints the table.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from difflab.configs import CONFIG_DIR
from difflab.errors import ConfigError, user_errors
from difflab.reporting.figures import draw_figures
from difflab.reporting.grouping import TRAIN_SEED, choose_metrics, group_jobs, numeric_keys, swept_keys
from difflab.reporting.jobs import find_jobs, read_job
from difflab.reporting.paired import check_not_grouped, compare, default_group_keys, paired_key
from difflab.reporting.paired_table import paired_markdown, write_paired_csv
from difflab.reporting.table import has_history, markdown, write_csv
from difflab.sweeps.overrides import override_key

__all__ = ["report", "run", "main"]

EXPECTED = ("a sweep directory, a folder of sweeps or a run directory (a job is a directory holding "
            ".hydra/overrides.yaml)")


def _names(cfg: DictConfig, key: str) -> list[str] | None:
    """A list option given as a list or a single value (``sweeps=PATH``); None when null."""
    value = cfg.get(key)
    if value is None:
        return None
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def sweep_paths(cfg: DictConfig) -> list[Path]:
    """The ``sweeps`` given, each checked to exist and to hold at least one job."""
    if OmegaConf.is_missing(cfg, "sweeps") or not _names(cfg, "sweeps"):
        raise ConfigError(f"sweeps is required: {EXPECTED}, e.g. sweeps=outputs/train/multiruns/<date> "
                          "or sweeps=[DIR1,DIR2]")
    if any(not name.strip() for name in _names(cfg, "sweeps")):
        raise ConfigError(f"sweeps={_names(cfg, 'sweeps')!r} holds an empty path; expected {EXPECTED}")
    paths = [Path(p).expanduser() for p in _names(cfg, "sweeps")]
    for path in paths:
        if not path.exists():
            raise ConfigError(f"sweeps: {path} does not exist; expected {EXPECTED}")
        if not path.is_dir():
            raise ConfigError(f"sweeps: {path} is not a directory; expected {EXPECTED}")
        if not find_jobs([path]):
            raise ConfigError(f"sweeps: {path} holds no job; expected {EXPECTED}")
    return paths


def report(cfg: DictConfig) -> dict[str, Any]:
    """Read the jobs of ``cfg.sweeps``, write <name>.csv, <name>.md (name: report) and the figures; return what was
    written."""
    paths = sweep_paths(cfg)
    jobs = [read_job(path) for path in find_jobs(paths)]
    out_dir = Path(cfg.out_dir) if cfg.get("out_dir") else (
        paths[0] if len(paths) == 1 else Path(os.path.commonpath([p.resolve() for p in paths])))
    requested = _names(cfg, "group_by")
    swept = swept_keys(jobs, requested or [])
    paired_by = paired_key(cfg.get("paired_by"), jobs, swept)
    keys = requested if requested is not None else default_group_keys(swept, paired_by)
    for key in keys:
        if all(job.setting(key) is None for job in jobs):
            raise ConfigError(f"group_by: {key} is set by none of the {len(jobs)} jobs; "
                              f"swept keys: {', '.join(k for k in swept if k not in keys) or 'none'}")
    check_not_grouped(paired_by, keys, swept)
    patterns = _names(cfg, "select")
    if patterns is not None and not patterns:
        raise ConfigError("select=[] selects no metric; give names or glob patterns, e.g. select=[val/fid*], "
                          "or leave the default [val/*,train/loss]")
    if not isinstance(cfg.get("figures", True), bool):
        raise ConfigError(f"figures={cfg.get('figures')!r} is not accepted; use true or false")
    name = str(cfg.get("name") or "report")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"name={name!r} must be a plain file name (letters, digits, . _ -), e.g. name=results")
    metrics, unmatched = choose_metrics(jobs, patterns or ["val/*", "train/loss"])
    groups = group_jobs(jobs, keys)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / f"{name}.csv", jobs, swept, metrics, out_dir)
    written = [out_dir / f"{name}.csv", out_dir / f"{name}.md"]
    sections: list[str] = []
    if paired_by is not None:
        comparisons = compare(groups, keys, metrics, paired_by)
        write_paired_csv(out_dir / "paired.csv", comparisons)
        sections = paired_markdown(comparisons, paired_by, [m for m in metrics if has_history(groups, m)])
        written.append(out_dir / "paired.csv")
    axes = numeric_keys(jobs, [k for k in dict.fromkeys([*swept, *keys]) if k not in ("seed", TRAIN_SEED)])
    figures = draw_figures(out_dir, jobs, groups, keys, metrics, axes) if cfg.get("figures", True) else []
    text = markdown(jobs, groups, keys, metrics, swept, out_dir, figures, unmatched, sections)
    (out_dir / f"{name}.md").write_text(text + "\n")
    print(text.split("\n## Figures")[0].rstrip())
    written += figures
    print("\ndifflab-report: wrote\n" + "\n".join(f"  {path}" for path in written))
    return {"out_dir": out_dir, "jobs": jobs, "swept": swept, "group_by": keys, "metrics": metrics,
            "paired_by": paired_by, "written": written}


def refuse_metrics_group(args: list[str]) -> None:
    """``metrics=[...]`` would make Hydra load difflab's config group of that name and fail with its own message:
    point to ``select`` instead, in one line (exit status 2)."""
    for arg in args:
        if "=" in arg and override_key(arg) == "metrics":
            print(f"difflab-report: error: {arg!r}: metrics is difflab's config group of scored metrics, "
                  "not an option of the report; choose the reported metrics with select=[NAME_OR_PATTERN,...] "
                  "(e.g. select=[val/fid*])",
                  file=sys.stderr, flush=True)
            sys.exit(2)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="report")
def run(cfg: DictConfig) -> None:
    """The Hydra application of ``difflab-report``."""
    with user_errors("difflab-report"):
        report(cfg)


def main() -> None:
    """Console entry point ``difflab-report`` (see ``difflab-report --help``)."""
    refuse_metrics_group(sys.argv[1:])
    run()


if __name__ == "__main__":
    main()
