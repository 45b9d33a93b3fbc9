"""Each digits study's committed tables come back byte for byte from its committed runs alone (overrides, metric
files and the scored checkpoints' training configs: no checkpoints, no training runs), with the report command its
README gives. The two-moons study's check is in test_moons_ten_steps.py."""

from __future__ import annotations

import shutil

import pytest
from conftest import REPO_ROOT
from omegaconf import OmegaConf

from difflab.report import report

EXPERIMENTS = REPO_ROOT / "experiments"
# study -> its reports: (subfolder of the study, its runs/ sweeps, the report options of its README)
STUDIES = {
    "ddim_table1": [("", ["ddim_table1", "ddim_table1_sigma_hat"],
                     {"select": ["val/fid", "val/fid_refval"],
                      "group_by": ["sampler.name", "sampler.eta", "sampler.steps"], "paired_by": "ckpt_path"})],
    "noise_schedules": [("", ["noise_schedules_eval"],
                         {"select": ["val/fid", "val/fid_refval"], "group_by": ["train.schedule.name", "sampler.steps"],
                          "paired_by": "train.seed"}),
                        ("nll", ["noise_schedules_nll"],
                         {"select": ["val/nll*"], "group_by": ["train.schedule.name"], "paired_by": "train.seed"})],
    "samplers_equal_cost": [("", ["samplers_equal_cost", "samplers_equal_cost_heun", "samplers_equal_cost_ddpm"],
                             {"select": ["val/fid", "val/fid_refval"], "group_by": ["sampler.name", "nfe"],
                              "paired_by": "ckpt_path"}),
                            ("cosine", ["samplers_equal_cost_cosine"],
                             {"select": ["val/fid", "val/fid_refval"],
                              "group_by": ["sampler.clip_sample", "sampler.steps"], "paired_by": "ckpt_path"})],
    "few_step_sampling": [("", ["few_step_sampling", "few_step_sampling_heun", "few_step_sampling_logsnr",
                                 "few_step_sampling_long", "few_step_sampling_seeds", "few_step_sampling_seeds_logsnr"],
                           {"select": ["val/fid"],
                            "group_by": ["sampler.name", "sampler.karras_sigmas", "sampler.timestep_spacing", "nfe"]}),
                          ("sde", ["few_step_sampling_sde", "few_step_sampling_sde_logsnr", "few_step_sampling_eta",
                                   "few_step_sampling_eta_karras", "few_step_sampling_seeds_eta"],
                           {"select": ["val/fid"],
                            "group_by": ["sampler.name", "sampler.karras_sigmas", "sampler.timestep_spacing",
                                         "sampler.eta", "nfe"]}),
                          ("seeds", ["few_step_sampling_seeds",
                                     *(f"few_step_sampling_seeds_logsnr/{j}" for j in (0, 1, 3, 4)),
                                     "few_step_sampling_seeds_eta", "few_step_sampling_seeds_more",
                                     "few_step_sampling_seeds_more_logsnr", "few_step_sampling_seeds_rivals",
                                     "few_step_sampling_seeds_rivals_karras", "few_step_sampling_seeds_rivals_logsnr"],
                           {"select": ["val/fid"], "paired_by": "seed",
                            "group_by": ["sampler.name", "sampler.karras_sigmas", "sampler.timestep_spacing",
                                         "sampler.eta", "nfe"]})],
    "objectives": [("", ["objectives_eval", "objectives_eval_learned"],
                    {"select": ["val/fid", "val/fid_refval", "val/nll*"],
                     "group_by": ["train.objective.prediction_type", "train.objective.learn_variance"],
                     "paired_by": "train.seed"})],
}


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_the_committed_tables_regenerate_from_the_committed_runs(study, tmp_path):
    shutil.copytree(EXPERIMENTS / study / "runs", tmp_path / study / "runs")
    for folder, sweeps, options in STUDIES[study]:
        out = tmp_path / study / folder  # the report is titled by its directory; its job column is relative to it
        committed = EXPERIMENTS / study / folder
        report(OmegaConf.create({"sweeps": [str(tmp_path / study / "runs" / s) for s in sweeps], "out_dir": str(out),
                                 "name": "results", "figures": False, **options}))
        written = sorted(p.name for p in out.iterdir() if p.is_file())
        expected = [name for name in ("paired.csv", "results.csv", "results.md") if (committed / name).is_file()]
        assert written == expected
        for name in expected:  # figures=false: the markdown has no figures section
            text = (committed / name).read_text().split("## Figures\n")[0]
            assert (out / name).read_text() == text, f"{folder or study}/{name}"
