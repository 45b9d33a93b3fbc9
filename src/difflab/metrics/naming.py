"""Metric names that say what they measured: ``val/fid_digits-lenet_n1000_ddim10-eta0.5_refval``.

``<prefix><metric>_<extractor>_n<num_samples>_<sampler label>[_ref<split>]``:

- the sampler label is the sampler's name (without underscores) and steps, then one ``-<token>`` per setting
  that differs from that sampler's constructor default (:func:`difflab.samplers.sampler_defaults`), in the order
  of :data:`SETTING_TOKENS`: ``ddim10``, ``ddim10-eta0.5``, ``ddpm10-large``, ``euler10-karras``,
  ``heun10-churn40``, ``dpmpp2m10-leading``, ``dpmpp3m20``, ``dpmpp2msde20-karras``, ``unipc10-logsnr``,
  ``ddim10-clip``. At default settings a label is ``<name><steps>``.
- ``_ref<split>`` names the real data a reference metric (fid, kid, precision_recall) was compared with, when it
  is not the training split (:data:`DEFAULT_REFERENCE_SPLIT`, which keeps the plain name): ``_refval``.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

from difflab.samplers import sampler_defaults

__all__ = ["DEFAULT_REFERENCE_SPLIT", "REFERENCE_METRICS", "REFERENCE_SPLITS", "SAMPLE_NEUTRAL_SETTINGS",
           "SETTING_TOKENS", "extractor_label", "format_number", "metric_name", "reference_splits", "sampler_label"]

LENET_EXTRACTORS = ("digits", "mnist", "fashion_mnist")

# How a setting reads in a sampler label when it differs from the default, in label order: the token is the key
# followed by the value (a flag: the key alone when true, "no" + key when false); None: the value alone (an enum
# whose values say what they are). Settings not listed use their name without underscores as the key.
SETTING_TOKENS: dict[str, str | None] = {
    "eta": "eta",
    "variance_type": None,
    "final_sigmas_type": None,
    "lower_order_final": "lowerfinal",
    "karras_sigmas": "karras",
    "rho": "rho",
    "s_churn": "churn",
    "s_tmin": "tmin",
    "s_tmax": "tmax",
    "s_noise": "snoise",
    "timestep_spacing": None,
    "clip_sample": "clip",
    "clip_sample_range": "cliprange",
    "thresholding": "thresh",
    "dynamic_thresholding_ratio": "threshratio",
    "sample_max_value": "threshmax",
}
VALUE_WORDS = {"fixed_small": "small", "fixed_large": "large", "learned_range": "learned", "sigma_min": "sigmamin"}

# Constructor options that do not change the samples, so a label leaves them out (none so far).
SAMPLE_NEUTRAL_SETTINGS: frozenset[str] = frozenset()

REFERENCE_SPLITS = ("train", "val")
DEFAULT_REFERENCE_SPLIT = "train"
REFERENCE_METRICS = ("fid", "kid", "precision_recall")  # the metrics that compare with the reference split

_TOKEN = re.compile(r"[a-z0-9.+-]+")


def extractor_label(name: str) -> str:
    """The name an extractor goes by in metric names: ``digits`` -> ``digits-lenet``, ``inception`` -> ``inception``."""
    return f"{name}-lenet" if name in LENET_EXTRACTORS else name


def format_number(value: float) -> str:
    """Compact and exact: 0.5 -> ``0.5``, 1.0 -> ``1``, 40.0 -> ``40``, 1e-05 -> ``1e-05``, inf -> ``inf``."""
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _token(key: str, value: Any) -> str:
    short = SETTING_TOKENS.get(key, key.replace("_", ""))
    if isinstance(value, bool):
        token = short if value else f"no{short}"
    elif isinstance(value, numbers.Real):
        token = f"{short}{format_number(value)}"
    elif isinstance(value, str):
        word = VALUE_WORDS.get(value, value.replace("_", ""))
        token = word if short is None else f"{short}{word}"
    else:
        token = ""
    if (short is None and not isinstance(value, str)) or not _TOKEN.fullmatch(token):
        raise ValueError(f"sampler.{key}={value!r} cannot be written into a metric name; "
                         "sampler settings must be numbers, booleans or lower-case words")
    return token


def sampler_label(settings: Mapping[str, Any]) -> str:
    """The sampler part of a metric name from the sampler's settings (a sampler config node: ``name``, ``steps`` and
    any other options; a missing option is at its default): ``{name: ddim, steps: 10}`` -> ``ddim10``,
    ``{name: ddim, steps: 10, eta: 0.5}`` -> ``ddim10-eta0.5``, ``{name: dpmpp_2m, steps: 20}`` -> ``dpmpp2m20``."""
    if "name" not in settings:
        raise ValueError(f"the sampler settings {dict(settings)} name no sampler: add name (e.g. name: ddim)")
    name = settings["name"]
    defaults = sampler_defaults(name)
    steps = settings.get("steps", defaults["steps"])
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise ValueError(f"sampler.steps={steps!r} must be an integer to name the metrics of sampler {name!r}")
    options = {k: v for k, v in settings.items() if k not in ("name", "steps") and not str(k).startswith("_")}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"sampler option {unknown[0]!r} is not known for sampler.name={name!r}; "
                         f"it takes {sorted(k for k in defaults if k != 'steps')}")
    changed = {k: v for k, v in options.items() if k not in SAMPLE_NEUTRAL_SETTINGS and v != defaults[k]}
    order = [*SETTING_TOKENS, *sorted(set(changed) - set(SETTING_TOKENS))]
    return "-".join([f"{str(name).replace('_', '')}{int(steps)}", *(_token(k, changed[k]) for k in order
                                                                       if k in changed)])


def reference_splits(value: Any, key: str = "evaluation.reference.split") -> list[str]:
    """The reference splits of ``key``'s ``value``: ``train``, ``val`` or a list of them without repeats, e.g.
    ``[train, val]`` (the samples are drawn once and compared with each); anything else is a ValueError."""
    splits = [value] if isinstance(value, str) else list(value) if isinstance(value, Sequence) else None
    if not splits or any(s not in REFERENCE_SPLITS for s in splits) or len(set(splits)) != len(splits):
        shown = value if isinstance(value, str) or not isinstance(value, Sequence) else list(value)
        raise ValueError(f"{key}={shown!r} must be one of {list(REFERENCE_SPLITS)} or a list of them without "
                         "repeats, e.g. [train,val]")
    return splits


def metric_name(
    metric: str,
    extractor: str | None,
    num_samples: int,
    sampler: Mapping[str, Any],
    prefix: str = "val/",
    reference_split: str = DEFAULT_REFERENCE_SPLIT,
) -> str:
    """``<prefix><metric>_<extractor>_n<num_samples>_<sampler label>`` (no extractor part for 2-D metrics), with
    ``_ref<split>`` for a reference metric compared with another split than the training split."""
    parts = [metric] + ([extractor] if extractor else []) + [f"n{int(num_samples)}", sampler_label(sampler)]
    if metric in REFERENCE_METRICS and reference_split != DEFAULT_REFERENCE_SPLIT:
        parts.append(f"ref{reference_split}")
    return prefix + "_".join(parts)
