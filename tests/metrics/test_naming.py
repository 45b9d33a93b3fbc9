"""A metric's name says how it was measured: every sampler setting that changes the samples shows in the label when it
is not the sampler's default, names at default settings are the same as before, and the reference split shows."""

from __future__ import annotations

import fnmatch
import math
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from difflab.configs import CONFIG_DIR
from difflab.diffusion import make_schedule
from difflab.metrics.naming import (
    SAMPLE_NEUTRAL_SETTINGS,
    format_number,
    metric_name,
    reference_splits,
    sampler_label,
)
from difflab.samplers import SAMPLERS, TIMESTEP_SPACINGS, make_sampler, sampler_defaults
from difflab.utils.metric_names import higher_is_better, short_name

DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpmpp_2m": 20, "dpmpp_3m": 20, "dpmpp_2m_sde": 20, "dpmpp_3m_sde": 20,
                 "unipc": 10, "euler": 50, "heun": 25}  # the conf files' steps


def conf_node(name: str) -> dict:
    """conf/sampler/<name>.yaml as plain values (ddpm's steps come from the schedule: 1000 by default)."""
    node = OmegaConf.load(Path(CONFIG_DIR) / "sampler" / f"{name}.yaml")
    if name == "ddpm":
        node.steps = 1000
    return OmegaConf.to_container(node, resolve=True)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_conf_files_defaults_are_the_constructors_defaults(name):
    """The label leaves out what equals the constructor's default, so the conf file must agree with it on every key.
    ``steps`` is in every label whatever its value (heun's conf file takes 25 steps, its class 50; ddpm's
    ``${schedule.num_timesteps}`` is the class's None)."""
    defaults = sampler_defaults(name)
    node = conf_node(name)
    options = {k: v for k, v in node.items() if k not in ("_target_", "_partial_", "name", "steps")}
    assert node["_target_"] == "difflab.samplers.make_sampler" and node["name"] == name
    assert set(options) <= set(defaults), f"conf/sampler/{name}.yaml has options the class does not take"
    for key, value in options.items():
        assert value == defaults[key] and type(value) is type(defaults[key]), (name, key, value, defaults[key])


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_names_at_default_settings_are_unchanged(name):
    plain = f"{name.replace('_', '')}{DEFAULT_STEPS[name]}"
    assert sampler_label({"name": name, "steps": DEFAULT_STEPS[name]}) == plain
    assert sampler_label(conf_node(name)) == plain  # the whole conf node, _target_ and defaults spelt out
    assert metric_name("fid", "digits-lenet", 1000, conf_node(name)) == f"val/fid_digits-lenet_n1000_{plain}"
    assert metric_name("two_d", None, 1000, conf_node(name)) == f"val/two_d_n1000_{plain}"


@pytest.mark.parametrize(("settings", "label"), [
    ({"name": "ddim", "steps": 10}, "ddim10"),
    ({"name": "ddim", "steps": 10, "eta": 0}, "ddim10"),
    ({"name": "ddim", "steps": 10, "eta": 0.5}, "ddim10-eta0.5"),
    ({"name": "ddim", "steps": 10, "eta": 1.0}, "ddim10-eta1"),
    ({"name": "ddim", "steps": 10, "eta": 0.2, "timestep_spacing": "trailing"}, "ddim10-eta0.2-trailing"),
    ({"name": "ddpm", "steps": 10, "variance_type": "fixed_large"}, "ddpm10-large"),
    ({"name": "ddpm", "steps": 1000, "variance_type": "fixed_small"}, "ddpm1000"),
    ({"name": "ddpm", "steps": 10, "variance_type": "learned_range"}, "ddpm10-learned"),
    ({"name": "euler", "steps": 10, "karras_sigmas": True}, "euler10-karras"),
    ({"name": "euler", "steps": 10, "karras_sigmas": True, "rho": 5.0}, "euler10-karras-rho5"),
    ({"name": "heun", "steps": 10, "s_churn": 40.0}, "heun10-churn40"),
    ({"name": "heun", "steps": 10, "s_churn": 40, "s_tmin": 0.05, "s_tmax": 50, "s_noise": 1.003},
     "heun10-churn40-tmin0.05-tmax50-snoise1.003"),
    ({"name": "dpmpp_2m", "steps": 10, "timestep_spacing": "leading"}, "dpmpp2m10-leading"),
    ({"name": "dpmpp_2m", "steps": 10, "final_sigmas_type": "sigma_min", "lower_order_final": False},
     "dpmpp2m10-sigmamin-nolowerfinal"),
    ({"name": "dpmpp_2m", "steps": 10, "karras_sigmas": True, "rho": 5.0}, "dpmpp2m10-karras-rho5"),
    ({"name": "dpmpp_3m", "steps": 20}, "dpmpp3m20"),
    ({"name": "dpmpp_3m", "steps": 8, "timestep_spacing": "logsnr"}, "dpmpp3m8-logsnr"),
    ({"name": "dpmpp_2m_sde", "steps": 20, "karras_sigmas": True}, "dpmpp2msde20-karras"),
    ({"name": "dpmpp_2m_sde", "steps": 10, "eta": 0.5}, "dpmpp2msde10-eta0.5"),
    ({"name": "dpmpp_3m_sde", "steps": 10, "eta": 1.0}, "dpmpp3msde10"),
    ({"name": "dpmpp_3m_sde", "steps": 10, "eta": 0}, "dpmpp3msde10-eta0"),
    ({"name": "unipc", "steps": 10}, "unipc10"),
    ({"name": "unipc", "steps": 10, "final_sigmas_type": "sigma_min", "lower_order_final": False},
     "unipc10-sigmamin-nolowerfinal"),
    ({"name": "ddim", "steps": 10, "clip_sample": True}, "ddim10-clip"),
    ({"name": "ddim", "steps": 10, "clip_sample": True, "clip_sample_range": 2.0}, "ddim10-clip-cliprange2"),
    ({"name": "dpmpp_2m", "steps": 10, "thresholding": True}, "dpmpp2m10-thresh"),
    ({"name": "dpmpp_2m", "steps": 10, "thresholding": True, "dynamic_thresholding_ratio": 0.9,
      "sample_max_value": 1.5}, "dpmpp2m10-thresh-threshratio0.9-threshmax1.5"),
])
def test_non_default_settings_show_in_a_short_stable_form(settings, label):
    assert sampler_label(settings) == label
    assert sampler_label(dict(reversed(list(settings.items())))) == label  # the order they are given in is irrelevant


def test_numbers_are_compact_and_exact():
    assert [format_number(v) for v in (0.5, 1.0, 0.2, 40.0, 0, 7, 1e-5, math.inf, 0.995, 1.0000001)] == \
        ["0.5", "1", "0.2", "40", "0", "7", "1e-05", "inf", "0.995", "1.0000001"]


# A non-default value for every constructor option; a new option fails the next test until it is added here.
OTHER_VALUE = {
    "eta": 0.5, "variance_type": "fixed_large", "lower_order_final": False, "final_sigmas_type": "sigma_min",
    "karras_sigmas": True, "rho": 3.0, "s_churn": 40.0, "s_tmin": 0.1, "s_tmax": 10.0, "s_noise": 1.003,
    "clip_sample": True, "clip_sample_range": 2.0, "thresholding": True, "dynamic_thresholding_ratio": 0.9,
    "sample_max_value": 2.0,
}


def other_value(name: str, key: str, default):
    if key == "timestep_spacing":
        return next(s for s in TIMESTEP_SPACINGS if s != default)
    return OTHER_VALUE[key]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_constructor_option_shows_in_the_label_when_changed(name):
    """Each option of the constructor (and its bases) either changes the label when set to another valid value or is
    listed as not changing the samples; any two changed options give labels of their own."""
    schedule = make_schedule("linear", num_timesteps=100)
    base = {"name": name, "steps": 10}
    labels = {sampler_label(base)}
    for key, default in sampler_defaults(name).items():
        if key == "steps":
            assert sampler_label({**base, "steps": 11}) != sampler_label(base)
            continue
        if key in SAMPLE_NEUTRAL_SETTINGS:
            continue
        value = other_value(name, key, default)
        assert value != default
        make_sampler(name, schedule=schedule, steps=10, **{key: value})  # a valid setting
        label = sampler_label({**base, key: value})
        assert label.startswith(sampler_label(base) + "-"), (key, label)
        labels.add(label)
    neutral = SAMPLE_NEUTRAL_SETTINGS & set(sampler_defaults(name))
    assert len(labels) == len(sampler_defaults(name)) - len(neutral)  # every change its own label (steps counted)


def tiny_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear network with 2C outputs (an eps prediction and learned-range values v)."""
    scale = (1.0 + t.to(x.dtype) / 25.0)[:, None]
    eps = torch.tanh(1.7 * x * scale + 0.3) * 1.2
    v = torch.sin(x + t.to(x.dtype)[:, None] / 10.0)
    return torch.cat([eps, v], dim=1)


def grid(name: str) -> list[dict]:
    """Settings of sampler ``name`` that sample differently or the same: defaults spelt out or not, each option
    changed, options that only matter together with another."""
    defaults = sampler_defaults(name)
    spacings = [{"timestep_spacing": s} for s in TIMESTEP_SPACINGS]
    shared = [{}, {k: v for k, v in defaults.items() if k != "steps"}, {"steps": 6}, *spacings,
              {"clip_sample": True}, {"clip_sample": True, "clip_sample_range": 0.5}, {"clip_sample_range": 0.5},
              {"clip_sample": True, "clip_sample_range": 2}, {"thresholding": True},
              {"thresholding": True, "sample_max_value": 1.5}, {"thresholding": True, "sample_max_value": 1.5,
                                                               "dynamic_thresholding_ratio": 0.8}]
    own = {
        "ddim": [{"eta": 0}, {"eta": 0.0}, {"eta": 0.5}, {"eta": 1}, {"eta": 1.0}, {"eta": 0.5, "clip_sample": True}],
        "ddpm": [{"variance_type": v} for v in ("fixed_small", "fixed_large", "learned_range")],
        "dpmpp_2m": [{"final_sigmas_type": "sigma_min"}, {"final_sigmas_type": "sigma_min", "lower_order_final": False},
                     {"lower_order_final": False}, {"timestep_spacing": "logsnr"}, {"karras_sigmas": True},
                     {"karras_sigmas": True, "rho": 3}, {"rho": 3}, {"karras_sigmas": True, "lower_order_final": False},
                     {"karras_sigmas": False, "timestep_spacing": "logsnr"}],
        "euler": [{"karras_sigmas": True}, {"karras_sigmas": True, "rho": 3}, {"rho": 3}, {"s_churn": 40},
                  {"s_churn": 40.0, "s_tmax": math.inf}, {"s_churn": 40, "s_noise": 1.5},
                  {"s_churn": 40, "s_tmin": 0.5}, {"s_churn": 40, "s_tmax": 2.0}],
    }
    own["heun"] = own["euler"]
    own["dpmpp_3m"] = own["unipc"] = own["dpmpp_2m"]
    own["dpmpp_2m_sde"] = own["dpmpp_3m_sde"] = [*own["dpmpp_2m"], {"eta": 1}, {"eta": 1.0}, {"eta": 0.5}, {"eta": 0},
                                                 {"eta": 0.5, "karras_sigmas": True}]
    settings = [{"name": name, "steps": 5, **s} for s in [*shared, *own[name]]]
    if "final_sigmas_type" in defaults:  # sigma_min needs a last timestep above 0: trailing without karras_sigmas
        settings = [s for s in settings if not (s.get("final_sigmas_type") == "sigma_min" and (
            s.get("timestep_spacing", "trailing") != "trailing" or s.get("karras_sigmas")))]
    return settings


def draw(settings: dict, schedule) -> torch.Tensor:
    options = {k: v for k, v in settings.items() if k != "name"}
    sampler = make_sampler(settings["name"], schedule=schedule, **options)
    x_T = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    generators = [torch.Generator().manual_seed(100 + i) for i in range(6)]  # the same noise in every run
    return sampler.sample(tiny_model, x_T, "eps", generators)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_settings_that_sample_differently_never_share_a_label(name):
    """Over a grid of settings, run each on the same model, start noise and step noise: two runs with the same label
    give the same samples (so different samples always mean different labels)."""
    schedule = make_schedule("linear", num_timesteps=50)
    by_label: dict[str, list[tuple[dict, torch.Tensor]]] = {}
    for settings in grid(name):
        by_label.setdefault(sampler_label(settings), []).append((settings, draw(settings, schedule)))
    outputs = [x for runs in by_label.values() for _, x in runs]
    distinct = [x for i, x in enumerate(outputs) if not any(torch.equal(x, y) for y in outputs[:i])]
    assert len(distinct) >= 6  # the grid really samples differently (not a constant output)
    for label, runs in by_label.items():
        for settings, x in runs[1:]:
            assert torch.equal(x, runs[0][1]), f"{label}: {runs[0][0]} and {settings} sample differently"
    assert any(len(runs) > 1 for runs in by_label.values())  # defaults spelt out share the plain label


@pytest.mark.parametrize(("settings", "message"), [
    ({"name": "ddim", "steps": 10, "tau": 1}, "sampler option 'tau' is not known for sampler.name='ddim'"),
    ({"name": "ddpm", "steps": 10, "eta": 0.5}, "sampler option 'eta' is not known for sampler.name='ddpm'"),
    ({"name": "plms", "steps": 10}, "sampler.name='plms' is not known"),
    ({"steps": 10}, "name no sampler"),
    ({"name": "ddpm"}, "sampler.steps=None must be an integer"),
    ({"name": "ddim", "steps": 10, "timestep_spacing": "Leading"}, "sampler.timestep_spacing='Leading' cannot be"),
])
def test_settings_that_cannot_name_a_metric_are_refused(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sampler_label(settings)


def test_the_reference_split_shows_unless_it_is_train():
    ddim = {"name": "ddim", "steps": 10, "eta": 0.5}
    assert metric_name("fid", "digits-lenet", 1000, ddim, reference_split="val") == \
        "val/fid_digits-lenet_n1000_ddim10-eta0.5_refval"
    assert metric_name("fid", "digits-lenet", 1000, ddim, reference_split="train") == \
        "val/fid_digits-lenet_n1000_ddim10-eta0.5"
    for metric in ("inception_score", "two_d"):  # compared with no reference: no split in the name
        assert not metric_name(metric, None, 1000, ddim, reference_split="val").endswith("_refval")


@pytest.mark.parametrize(("value", "expected"), [
    ("train", ["train"]), ("val", ["val"]), (["train", "val"], ["train", "val"]), (["val", "train"], ["val", "train"]),
    (("val",), ["val"]),
])
def test_reference_splits_accepts_a_split_or_a_list(value, expected):
    assert reference_splits(value) == expected


@pytest.mark.parametrize("value", ["test", ["train", "test"], [], ["train", "train"], None, 3])
def test_bad_reference_splits_are_named(value):
    with pytest.raises(ValueError) as err:
        reference_splits(value, "reference.split")
    shown = list(value) if isinstance(value, list) else value
    assert str(err.value) == (f"reference.split={shown!r} must be one of ['train', 'val'] or a list of them without "
                              "repeats, e.g. [train,val]")


def test_short_names_direction_and_globs_read_the_new_names():
    names = {
        "val/fid_digits-lenet_n1000_ddim10-eta0.5": "fid",
        "val/fid_digits-lenet_n1000_ddim10-eta0.5_refval": "fid_refval",
        "val/kid_inception_n500_euler10-churn40-tmin1e-05-tmaxinf_refval_std": "kid_refval_std",
        "val/precision_fashion_mnist-lenet_n1000_dpmpp2m10-leading-thresh_refval": "precision_refval",
        "val/inception_score_digits-lenet_n1000_heun10-karras-rho5_std": "inception_score_std",
        "val/two_d_n1000_ddpm10-large": "two_d",
        "val/fid_digits-lenet_n1000_ddim10-tmin-1": "fid",
    }
    assert {name: short_name(name) for name in names} == names
    assert [higher_is_better(n) for n in names] == [False, False, False, True, True, False, False]
    assert fnmatch.filter(names, "val/fid*") == [n for n in names if n.startswith("val/fid")]
    assert fnmatch.filter(names, "val/*_refval") == [n for n in names if n.endswith("_refval")]
