"""paired_by: the comparisons of groups differing in one key, their jobs matched by seed (or checkpoint), checked
against the differences, std and p-values scipy computes here on the numbers the fake jobs were written with."""

from __future__ import annotations

import csv
import math
import re
import statistics
from itertools import combinations

import pytest
from fake_sweeps import (
    LOSS,
    SCHEDULES,
    W2,
    WEIGHTINGS,
    assert_cell,
    checkpoint_sweep,
    factorial_sweep,
    md_subtable,
    md_table,
    write_job,
)
from omegaconf import OmegaConf
from scipy import stats

from difflab.errors import ConfigError
from difflab.report import report
from difflab.reporting.origin import training_run_dir
from difflab.reporting.paired import paired_stats

KEYS = ("schedule", "objective.weighting")
LEVELS = {"schedule": SCHEDULES, "objective.weighting": WEIGHTINGS}


def run_report(**options):
    cfg = OmegaConf.create({"sweeps": None, "select": ["val/*", "train/loss"], "group_by": None, "paired_by": None,
                            "out_dir": None, "figures": False, **options})
    return report(cfg)


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def expected_comparisons(truth: dict, metric: str, kind: str) -> dict[tuple, dict]:
    """Every pair of settings of one key at each setting of the other, A listed first in the sweep: the seeds
    finished on both sides, the values (final: at the last step; best: the min) and the unmatched counts."""
    value = (lambda s: s[max(s)]) if kind == "final" else (lambda s: min(s.values()))
    out = {}
    for index, key in enumerate(KEYS):
        other = KEYS[1 - index]
        for fixed in LEVELS[other]:
            for a, b in combinations(LEVELS[key], 2):
                side = {level: {t["seed"]: value(t["series"][metric]) for t in truth.values()
                                if t[key] == level and t[other] == fixed and t["status"] == "finished"}
                        for level in (a, b)}
                seeds = sorted(set(side[a]) & set(side[b]))
                out[(key, a, b, f"{other}={fixed}")] = {
                    "seeds": seeds, "a": [side[a][s] for s in seeds], "b": [side[b][s] for s in seeds],
                    "unmatched": (len(side[a]) - len(seeds), len(side[b]) - len(seeds))}
    return out


@pytest.fixture(scope="module")
def factorial(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired") / "sweep"
    truth = factorial_sweep(root)
    out = run_report(sweeps=str(root), paired_by="seed")
    return root, truth, out


def test_a_two_factor_sweep_gives_exactly_the_comparisons_differing_in_one_key(factorial):
    root, truth, out = factorial
    assert out["group_by"] == list(KEYS) and out["paired_by"] == "seed" and root / "paired.csv" in out["written"]
    rows = read_rows(root / "paired.csv")
    for metric in (W2, LOSS):
        found = [(r["key"], r["a"], r["b"], r["others"]) for r in rows if r["metric"] == metric]
        assert len(found) == len(set(found)) == 3 * 2 + 1 * 3  # 3 schedule pairs per weighting, 1 pair per schedule
        assert set(found) == set(expected_comparisons(truth, metric, "final"))


@pytest.mark.parametrize("kind", ["final", "best"])
def test_paired_csv_matches_scipy_on_the_same_numbers(factorial, kind):
    root, truth, _ = factorial
    rows = {(r["metric"], r["key"], r["a"], r["b"], r["others"]): r for r in read_rows(root / "paired.csv")}
    for metric in (W2, LOSS):
        for (key, a, b, others), expected in expected_comparisons(truth, metric, kind).items():
            row = rows[(metric, key, a, b, others)]
            diffs = [y - x for x, y in zip(expected["a"], expected["b"])]
            assert row["matched"].split() == [str(s) for s in expected["seeds"]]
            assert (int(row["n"]), int(row["unmatched_a"]), int(row["unmatched_b"])) == \
                (len(diffs), *expected["unmatched"])
            assert float(row[f"{kind}_diff_mean"]) == pytest.approx(statistics.fmean(diffs), rel=1e-12)
            assert float(row[f"{kind}_diff_std"]) == pytest.approx(statistics.stdev(diffs), rel=1e-9)
            assert float(row[f"{kind}_mean_a"]) == pytest.approx(statistics.fmean(expected["a"]), rel=1e-12)
            assert float(row[f"{kind}_mean_b"]) == pytest.approx(statistics.fmean(expected["b"]), rel=1e-12)
            assert int(row[f"{kind}_b_lower"]) == sum(d < 0 for d in diffs)
            assert float(row[f"{kind}_p_ttest"]) == pytest.approx(stats.ttest_rel(expected["b"], expected["a"]).pvalue,
                                                                  rel=1e-9)
            assert float(row[f"{kind}_p_wilcoxon"]) == pytest.approx(stats.wilcoxon(diffs).pvalue, rel=1e-9)
            assert row[f"{kind}_note"] == ""


def test_the_unmatched_jobs_are_left_out_and_counted(factorial):
    root, _, _ = factorial
    rows = {(r["metric"], r["key"], r["a"], r["b"], r["others"]): r for r in read_rows(root / "paired.csv")}
    extra = rows[(W2, "schedule", "linear", "cosine", "objective.weighting=uniform")]  # seed 3 only on linear
    assert (extra["n"], extra["matched"], extra["unmatched_a"], extra["unmatched_b"]) == ("3", "0 1 2", "1", "0")
    failed = rows[(W2, "schedule", "cosine", "sigmoid", "objective.weighting=min_snr")]  # cosine's seed 2 failed
    assert (failed["n"], failed["matched"], failed["unmatched_a"], failed["unmatched_b"]) == ("2", "0 1", "0", "1")


def test_report_md_has_a_readable_paired_section(factorial):
    root, truth, _ = factorial
    text = (root / "report.md").read_text()
    section = text.split("## Paired comparisons", 1)[1].split("\n## ", 1)[0]
    assert "matched by seed" in section and "scipy.stats.ttest_rel" in section and "scipy.stats.wilcoxon" in section
    assert text.index("## Paired comparisons") < text.index("## Failed and incomplete jobs")
    csv_rows = {(r["metric"], r["key"], r["a"], r["b"], r["others"]): r for r in read_rows(root / "paired.csv")}
    for kind, title in (("final", "final value"), ("best", "best value during training")):
        for metric in (W2, LOSS):
            table = md_subtable(text, f"{metric}: {title} (lower is better)")
            assert len(table) == 9
            for row in table:
                expected = expected_comparisons(truth, metric, kind)[(row["key"], row["A"], row["B"],
                                                                       row["other keys"])]
                diffs = [y - x for x, y in zip(expected["a"], expected["b"])]
                mean, std = re.fullmatch(r"([-+0-9.e]+) ± ([0-9.e-]+)", row["B − A (mean ± std)"]).groups()
                assert float(mean) == pytest.approx(statistics.fmean(diffs), rel=1e-3)
                assert float(std) == pytest.approx(statistics.stdev(diffs), rel=0.05)
                assert row["n pairs"] == str(len(diffs))
                assert row["B < A"] == f"{sum(d < 0 for d in diffs)} of {len(diffs)}"
                assert row["unmatched A/B"] == "{}/{}".format(*expected["unmatched"])
                csv_row = csv_rows[(metric, row["key"], row["A"], row["B"], row["other keys"])]
                assert row["p (t-test)"] == format(float(csv_row[f"{kind}_p_ttest"]), ".2g")
                assert row["p (Wilcoxon)"] == format(float(csv_row[f"{kind}_p_wilcoxon"]), ".2g")


def test_no_test_without_two_pairs_or_with_differences_all_zero(tmp_path):
    """Linear and cosine with the same values for seeds 0..2 (differences all 0); seeds 4/5 without a partner."""
    for number, (schedule, seed) in enumerate([("linear", 0), ("linear", 1), ("linear", 2), ("linear", 4),
                                               ("cosine", 0), ("cosine", 1), ("cosine", 2), ("cosine", 5)]):
        overrides = [f"schedule={schedule}", f"seed={seed}"]
        write_job(tmp_path / "s" / str(number), overrides, {"task": "train", "overrides": overrides, "step": 10,
                                                            "status": "finished", "metrics": {W2: 0.1 * seed}})
    run_report(sweeps=str(tmp_path / "s"), paired_by="seed")
    (row,) = read_rows(tmp_path / "s" / "paired.csv")
    assert (row["n"], row["unmatched_a"], row["unmatched_b"], row["final_diff_mean"], row["final_b_lower"]) == \
        ("3", "1", "1", "0.0", "0")
    assert row["final_p_ttest"] == row["final_p_wilcoxon"] == "" and row["final_note"] == \
        "all differences are 0: no test"
    (md,) = md_subtable((tmp_path / "s" / "report.md").read_text(), f"{W2}: final value")
    assert (md["p (t-test)"], md["p (Wilcoxon)"], md["note"]) == ("-", "-", "all differences are 0: no test")


def test_two_sweeps_of_the_same_seeds_are_averaged_per_seed_and_say_so(tmp_path):
    values = {("a", "linear", 0): 1.0, ("a", "linear", 1): 2.0, ("a", "cosine", 0): 1.5, ("a", "cosine", 1): 2.1,
              ("b", "linear", 0): 3.0, ("b", "cosine", 0): 3.1}  # sweep b repeats seed 0
    for number, ((sweep, schedule, seed), value) in enumerate(values.items()):
        overrides = [f"schedule={schedule}", f"seed={seed}"]
        write_job(tmp_path / sweep / str(number), overrides, {"task": "train", "overrides": overrides, "step": 10,
                                                              "status": "finished", "metrics": {W2: value}})
    run_report(sweeps=[str(tmp_path / "a"), str(tmp_path / "b")], paired_by="seed", out_dir=str(tmp_path / "r"))
    (row,) = read_rows(tmp_path / "r" / "paired.csv")
    a, b = [(1.0 + 3.0) / 2, 2.0], [(1.5 + 3.1) / 2, 2.1]  # seed 0: the mean of its two jobs on each side
    assert float(row["final_diff_mean"]) == pytest.approx(statistics.fmean(y - x for x, y in zip(a, b)))
    assert float(row["final_p_ttest"]) == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert row["final_note"] == "1 seed value(s) averaged over several jobs of a side"


def test_paired_stats_edge_cases_match_scipy_where_scipy_has_an_answer():
    assert paired_stats([], []).note == "no matched pair"
    one = paired_stats([1.0], [2.0])
    assert (one.n, one.diff_mean, one.diff_std, one.p_ttest, one.p_wilcoxon, one.note) == \
        (1, 1.0, None, None, None, "n < 2: no test")
    equal = paired_stats([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])  # no spread: no t-test, Wilcoxon still defined
    assert equal.p_ttest is None and equal.p_wilcoxon == pytest.approx(stats.wilcoxon([0.5, 0.5, 0.5]).pvalue)
    assert equal.note == "all differences equal: no t-test" and equal.b_lower == 0
    a, b = [0.3, 0.2, 0.5, 0.4, 0.1], [0.3, 0.1, 0.2, 0.45, 0.05]  # one zero difference
    some = paired_stats(a, b)
    assert some.p_ttest == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert some.p_wilcoxon == pytest.approx(stats.wilcoxon([y - x for x, y in zip(a, b)]).pvalue)
    assert some.b_lower == 3 and some.note == "Wilcoxon leaves out 1 zero difference"
    assert paired_stats([1.0, 2.0], [math.inf, 3.0]).note == "a value is not finite: no test"


@pytest.mark.parametrize(("options", "message"), [
    ({"paired_by": "nope"}, "paired_by: nope is set by none of the 19 jobs; swept keys: schedule, "
                            "objective.weighting, seed"),
    ({"paired_by": "seed", "group_by": ["schedule", "seed"]},
     "paired_by: seed is also in group_by=[schedule,seed]; pair by a key the groups share (the seeds), "
     "e.g. group_by=[schedule] paired_by=seed; swept keys: schedule, objective.weighting, seed"),
    ({"paired_by": ["seed", "schedule"]}, "paired_by=['seed', 'schedule'] is not accepted; give one key"),
])
def test_bad_paired_by_is_one_config_error_before_anything_is_written(tmp_path, options, message):
    factorial_sweep(tmp_path / "s")
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_report(sweeps=str(tmp_path / "s"), **options)
    assert not (tmp_path / "s" / "report.csv").exists()


def test_without_paired_by_nothing_changes(tmp_path):
    factorial_sweep(tmp_path / "s")
    out = run_report(sweeps=str(tmp_path / "s"))
    assert out["paired_by"] is None and not (tmp_path / "s" / "paired.csv").exists()
    assert "## Paired comparisons" not in (tmp_path / "s" / "report.md").read_text()


# --- evaluation sweeps over the checkpoints of several training seeds ---


@pytest.fixture
def checkpoints(tmp_path):
    return tmp_path, checkpoint_sweep(tmp_path)


def test_checkpoints_are_averaged_by_sampler_settings_and_mapped_to_their_training_seed(checkpoints):
    root, truth = checkpoints
    out = run_report(sweeps=str(root / "eval"), group_by=["sampler.eta", "sampler.steps"])
    assert out["swept"] == ["ckpt_path", "train.seed", "sampler.eta", "sampler.steps"]
    final = md_table((root / "eval" / "report.md").read_text(), "Final values")
    assert [(r["sampler.eta"], r["sampler.steps"]) for r in final] == [("0", "10"), ("0", "20"), ("1", "10"),
                                                                       ("1", "20")]
    for row in final:
        values = [t["value"] for t in truth.values()
                  if (str(t["sampler.eta"]), str(t["sampler.steps"])) == (row["sampler.eta"], row["sampler.steps"])]
        assert row["finished"] == "3 of 3" and len(values) == 3
        assert_cell(row["val/two_d"], values)  # mean ± std over the three checkpoints
    rows = read_rows(root / "eval" / "report.csv")
    assert [(r["ckpt_path"], r["train.seed"]) for r in rows] == \
        [(t["ckpt_path"], str(t["train.seed"])) for t in truth.values()]


def test_checkpoints_are_paired_by_training_seed_or_path_alike(checkpoints):
    root, truth = checkpoints
    results = {}
    for key in ("train.seed", "ckpt_path"):
        out = run_report(sweeps=str(root / "eval"), paired_by=key, out_dir=str(root / key))
        assert out["group_by"] == ["sampler.eta", "sampler.steps"]  # the checkpoint keys are what is paired
        results[key] = read_rows(root / key / "paired.csv")
    assert [r["final_p_ttest"] for r in results["train.seed"]] == [r["final_p_ttest"] for r in results["ckpt_path"]]
    rows = {(r["key"], r["a"], r["b"], r["others"]): r for r in results["train.seed"]}
    assert set(rows) == {("sampler.eta", "0", "1", "sampler.steps=10"), ("sampler.eta", "0", "1", "sampler.steps=20"),
                         ("sampler.steps", "10", "20", "sampler.eta=0"), ("sampler.steps", "10", "20", "sampler.eta=1")}
    row = rows[("sampler.eta", "0", "1", "sampler.steps=20")]
    by_seed = {(t["train.seed"], t["sampler.eta"]): t["value"] for t in truth.values() if t["sampler.steps"] == 20}
    a, b = [by_seed[(s, 0)] for s in range(3)], [by_seed[(s, 1)] for s in range(3)]
    assert row["matched"] == "0 1 2" and int(row["final_b_lower"]) == sum(y < x for x, y in zip(a, b))
    assert float(row["final_diff_mean"]) == pytest.approx(statistics.fmean(y - x for x, y in zip(a, b)))
    assert float(row["final_p_ttest"]) == pytest.approx(stats.ttest_rel(b, a).pvalue)


def report_rows(root, name: str) -> list[dict[str, str]]:
    run_report(sweeps=str(root / "eval"), out_dir=str(root / name))
    return read_rows(root / name / "report.csv")


def test_without_the_training_runs_train_keys_come_from_the_evaluations_copy_of_the_training_config(checkpoints):
    """A study's committed runs carry no checkpoints or training runs: train.seed must come out the same."""
    import shutil

    root, truth = checkpoints
    before = report_rows(root, "a")
    shutil.rmtree(root / "outputs")
    after = report_rows(root, "b")
    assert [r["train.seed"] for r in after] == [r["train.seed"] for r in before] == \
        [str(t["train.seed"]) for t in truth.values()]
    for job in (root / "eval").iterdir():
        (job / "trained_config.yaml").unlink()
    gone = report_rows(root, "c")
    assert {r.get("train.seed") or "" for r in gone} == {""}  # no origin known: empty, never guessed


def test_an_evaluation_rows_columns_such_as_nfe_group_like_settings(checkpoints):
    root, truth = checkpoints
    run_report(sweeps=str(root / "eval"), group_by=["sampler.eta", "nfe"], out_dir=str(root / "n"))
    final = md_table((root / "n" / "report.md").read_text(), "Final values")
    assert [(r["sampler.eta"], r["nfe"]) for r in final] == [("0", "10"), ("0", "20"), ("1", "10"), ("1", "20")]
    for row in final:
        assert_cell(row["val/two_d"], [t["value"] for t in truth.values() if (str(t["sampler.eta"]),
                    str(t["sampler.steps"])) == (row["sampler.eta"], row["nfe"])])


def test_a_checkpoints_training_run_is_found_only_where_it_is(tmp_path):
    run = tmp_path / "runs" / "r"
    write_job(run, ["seed=7"])
    assert training_run_dir(str(run / "checkpoints" / "last.ckpt"), None) == run
    assert training_run_dir("runs/r/checkpoints/best.ckpt", str(tmp_path)) == run
    assert training_run_dir("runs/r/checkpoints/best.ckpt", None) is None  # relative, the evaluation's cwd unknown
    assert training_run_dir(str(tmp_path / "elsewhere" / "checkpoints" / "last.ckpt"), None) is None  # no run there
    assert training_run_dir(str(run / "last.ckpt"), None) is None  # not in checkpoints/: no guess
