"""The paired comparisons' tables: ``paired.csv`` (one row per comparison and metric, every number) and the
``## Paired comparisons`` section of report.md (a table per metric, rounded)."""

from __future__ import annotations

import csv
from pathlib import Path

from difflab.reporting.paired import KINDS, Comparison, PairedStats
from difflab.reporting.table import markdown_table
from difflab.utils.metric_names import higher_is_better

__all__ = ["write_paired_csv", "paired_markdown", "EXPLANATION", "HEADER"]

EXPLANATION = ("Groups that differ in one key are compared pair by pair, their jobs matched by {paired_by}: "
               "B − A is the mean ± sample std (ddof=1) of the n per-pair differences; mean A and mean B are over "
               "the same pairs; p: two-sided paired t-test (scipy.stats.ttest_rel) and Wilcoxon signed-rank test "
               "(scipy.stats.wilcoxon) of no difference, not corrected for the number of comparisons (with n pairs "
               "Wilcoxon's p cannot go below 2/2^n: 0.25 for n=3, 0.0625 for n=5); jobs without a partner are left "
               "out and counted (unmatched A/B).")


def _columns() -> list[str]:
    stat = ["diff_mean", "diff_std", "mean_a", "mean_b", "b_lower", "p_ttest", "p_wilcoxon", "note"]
    return ["metric", "key", "a", "b", "others", "paired_by", "n", "matched", "unmatched_a", "unmatched_b",
            *(f"{kind}_{s}" for kind in KINDS for s in stat)]


def write_paired_csv(path: Path, comparisons: list[Comparison]) -> None:
    """``paired.csv``: one row per comparison and metric; ``final_*`` and ``best_*`` columns (empty: no value)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_columns())
        writer.writeheader()
        for c in comparisons:
            row: dict[str, object] = {"metric": c.metric, "key": c.key, "a": c.a, "b": c.b, "others": c.others,
                                      "paired_by": c.paired_by, "n": len(c.matched), "matched": " ".join(c.matched),
                                      "unmatched_a": c.unmatched_a, "unmatched_b": c.unmatched_b}
            for kind, s in c.stats.items():
                note = "; ".join(filter(None, [s.note, _averaged(c)]))
                row.update({f"{kind}_{name}": value for name, value in vars(s).items() if name != "n"})
                row[f"{kind}_note"] = note
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _averaged(c: Comparison) -> str:
    return f"{c.averaged} {c.paired_by} value(s) averaged over several jobs of a side" if c.averaged else ""


def _number(value: float | None, digits: str = ".4g") -> str:
    return "-" if value is None else format(value, digits)


def _row(c: Comparison, s: PairedStats) -> list[object]:
    diff = "-" if s.diff_mean is None else _number(s.diff_mean, "+.4g") + (
        f" ± {s.diff_std:.2g}" if s.diff_std is not None else "")
    return [c.key, c.a or "unset", c.b or "unset", c.others or "-", s.n, diff, _number(s.mean_a), _number(s.mean_b),
            f"{s.b_lower} of {s.n}", _number(s.p_ttest, ".2g"), _number(s.p_wilcoxon, ".2g"),
            f"{c.unmatched_a}/{c.unmatched_b}", "; ".join(filter(None, [s.note, _averaged(c)]))]


HEADER = ["key", "A", "B", "other keys", "n pairs", "B − A (mean ± std)", "mean A", "mean B", "B < A", "p (t-test)",
          "p (Wilcoxon)", "unmatched A/B", "note"]


def paired_markdown(comparisons: list[Comparison], paired_by: str, best_metrics: list[str]) -> list[str]:
    """The ``## Paired comparisons`` section of report.md: a table per metric for the final values, then one per
    metric of ``best_metrics`` (those logged at several steps) for the best values during training."""
    lines = ["## Paired comparisons", "", EXPLANATION.format(paired_by=paired_by), ""]
    if not comparisons:
        return [*lines, "Nothing to compare: no two groups differ in exactly one group key, or no metric is "
                        "logged yet.", ""]
    metrics = list(dict.fromkeys(c.metric for c in comparisons))
    for kind, chosen in (("final", metrics), ("best", [m for m in metrics if m in best_metrics])):
        for metric in chosen:
            better = "higher" if higher_is_better(metric) else "lower"
            title = "final value" if kind == "final" else "best value during training"
            rows = [_row(c, c.stats[kind]) for c in comparisons if c.metric == metric]
            lines += [f"### {metric}: {title} ({better} is better)", "", *markdown_table(HEADER, rows), ""]
    return lines
