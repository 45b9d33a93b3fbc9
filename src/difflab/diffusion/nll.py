"""Likelihood from the variational bound (Ho et al. 2020, eq. 5 and Sec. 3.3; Nichol & Dhariwal 2021, Sec. 3.1).

For data x0 in [-1, 1] the negative log-likelihood is bounded by

    -log p(x0) <= L_T + sum_{t=1}^{T-1} L_t + L_0
    L_T = KL(q(x_T | x0) || N(0, I))                                   (prior; no parameters)
    L_t = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)),   x_t ~ q(x_t | x0)
    L_0 = -log p(x0 | x_1)                                             (discretized Gaussian decoder, eq. 13)

Timesteps use the code's 0-based convention (``t = 0`` is the paper's t = 1): the term at index ``t >= 1`` is the
KL between the Gaussians over x_{t-1} given x_t, and index 0 is the decoder. Every term is reported in bits per
dimension: the mean over the data dimensions divided by log 2.

The model's reverse step p(x_{t-1} | x_t) = N(mu, Sigma) and its variance types (fixed_small, fixed_large,
learned_range) are those of ``reverse.py``, on the full chain (``GaussianDiffusion.reverse``).

Pure tensor code: no Lightning or Hydra.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from difflab.diffusion.parameterization import check_prediction_type
from difflab.diffusion.process import GaussianDiffusion
from difflab.diffusion.reverse import check_variance_type, split_output

__all__ = [
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "mean_flat",
    "prior_bpd",
    "vlb_term_bpd",
    "vlb_terms",
    "bits_per_dim",
]

LOG2 = math.log(2.0)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the first: [B, ...] -> [B]."""
    return x.flatten(1).mean(dim=1)


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats (arguments broadcast)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012)."""
    return torch.where(x > -LOG2, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _log_ndtr_diff(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Phi(hi) - Phi(lo)) for lo < hi without cancellation in either tail.

    Both-upper-tail intervals are reflected (Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi)) so the difference is always
    taken on the side where Phi is small; then
    log(Phi(b) - Phi(a)) = log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b))).
    When the interval is so narrow that the two log-CDFs would cancel (width below 1e-5 in float64, 1e-2 in lower
    precision), the midpoint rule with its second-order correction,
    log(phi(mid) w) + log1p(w^2 (mid^2 - 1) / 24) for w = hi - lo, is used instead (relative error O(w^4 mid^4)).
    """
    flip = lo > 0
    a = torch.where(flip, -hi, lo)
    b = torch.where(flip, -lo, hi)
    log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
    width = b - a
    narrow = width < (1e-5 if width.dtype == torch.float64 else 1e-2)
    diff = torch.where(narrow, torch.full_like(log_a, -1.0), log_a - log_b)  # keep the unused branch finite
    exact = log_b + _log1mexp(diff.clamp(max=-torch.finfo(diff.dtype).tiny))
    mid = 0.5 * (a + b)
    w = width.clamp(min=torch.finfo(width.dtype).tiny)
    midpoint = -0.5 * mid**2 - 0.5 * math.log(2 * math.pi) + torch.log(w) + torch.log1p(w**2 * (mid**2 - 1.0) / 24.0)
    return torch.where(narrow, midpoint, exact)


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, num_bins: int = 256
) -> torch.Tensor:
    """Elementwise log-probability (nats) of data ``x`` under a Gaussian discretized to ``num_bins`` bins on [-1, 1].

    Ho et al. 2020, eq. 13: the data are the ``num_bins`` equally spaced values -1 + 2k/(num_bins - 1) (8-bit
    images: k/127.5 - 1). Value x owns the bin [x - h, x + h] with h = 1/(num_bins - 1) (1/255 for 256 bins), except
    that the first bin extends to -inf and the last to +inf, so the probabilities of all bins sum to 1.
    ``log_scales`` is the log standard deviation. Values below -1 + h (above 1 - h) are scored as the open-ended
    first (last) bin. Logs of CDF differences are computed without cancellation (see ``_log_ndtr_diff``).
    """
    if num_bins < 2:
        raise ValueError(f"num_bins={num_bins!r} must be >= 2")
    half = 1.0 / (num_bins - 1)
    x, means, log_scales = torch.broadcast_tensors(x, means, log_scales)
    inv_std = torch.exp(-log_scales)
    centered = x - means
    upper = inv_std * (centered + half)
    lower = inv_std * (centered - half)
    log_cdf_upper = torch.special.log_ndtr(upper)  # first bin: P(X <= x + h)
    log_sf_lower = torch.special.log_ndtr(-lower)  # last bin: P(X >= x - h)
    first, last = x < -1.0 + half, x > 1.0 - half
    # For the edge elements the interior branch is evaluated on a dummy unit interval, so it (and its gradient)
    # stays finite.
    lo = torch.where(first | last, torch.zeros_like(lower), lower)
    hi = torch.where(first | last, torch.ones_like(upper), upper)
    log_mid = _log_ndtr_diff(lo, hi)
    return torch.where(first, log_cdf_upper, torch.where(last, log_sf_lower, log_mid))


def prior_bpd(diffusion: GaussianDiffusion, x0: torch.Tensor) -> torch.Tensor:
    """KL(q(x_T | x0) || N(0, I)) per sample in bits/dim, shape [B]. It has no parameters: it only says how much
    of the data is left at the last step."""
    t = torch.full((x0.shape[0],), diffusion.num_timesteps - 1, dtype=torch.long, device=x0.device)
    mean, var = diffusion.q_mean_variance(x0, t)
    kl = normal_kl(mean, torch.log(var), torch.zeros_like(mean), torch.zeros_like(mean))
    return mean_flat(kl) / LOG2


def vlb_term_bpd(
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    model_mean: torch.Tensor,
    model_log_variance: torch.Tensor,
    num_bins: int = 256,
) -> torch.Tensor:
    """The bound's term at each sample's timestep, in bits/dim, shape [B]: KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) for
    t >= 1 and the decoder's -log p(x0 | x_1) for t = 0 (the two may be mixed in one batch)."""
    true_mean, _, true_log_var = diffusion.q_posterior(x0, x_t, t)
    kl = mean_flat(normal_kl(true_mean, true_log_var, model_mean, model_log_variance)) / LOG2
    decoder = -mean_flat(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_variance, num_bins)) / LOG2
    return torch.where(t == 0, decoder, kl)


def _kl_sum_weights(num_timesteps: int, kl_ts: np.ndarray) -> np.ndarray:
    """Weights w with sum_{t=1}^{T-1} L_t ~= sum_k w_k L_{kl_ts[k]}: linear interpolation of L_t between the evaluated
    timesteps (constant beyond the first and last)."""
    all_t = np.arange(1, num_timesteps)
    eye = np.eye(kl_ts.size)
    return np.array([np.interp(all_t, kl_ts, eye[k]).sum() for k in range(kl_ts.size)])


def _evaluation_plan(
    num_timesteps: int, timesteps: Sequence[int] | None, stride: int
) -> list[tuple[int, int, float]]:
    """(first, last + 1, weight) per model evaluation over t >= 1: t is drawn uniformly in [first, last + 1) per sample
    (a single value when the block has one timestep) and the term enters the KL sum with ``weight``."""
    T = num_timesteps
    if timesteps is not None:
        if stride != 1:
            raise ValueError("pass either timesteps or stride, not both")
        ts = np.unique(np.asarray(list(timesteps), dtype=np.int64))
        if ts.size == 0 or ts.min() < 0 or ts.max() >= T:
            raise ValueError(f"timesteps must be a non-empty subset of 0..{T - 1}")
        ts = ts[ts >= 1]
        if ts.size == 0:
            raise ValueError("timesteps needs at least one t >= 1 (t = 0, the decoder, is always evaluated)")
        return [(int(t), int(t) + 1, float(w)) for t, w in zip(ts, _kl_sum_weights(T, ts))]
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride={stride!r} must be a positive integer")
    return [(first, min(first + stride, T), float(min(first + stride, T) - first)) for first in range(1, T, stride)]


@torch.no_grad()
def vlb_terms(
    model_fn: Callable[..., torch.Tensor],
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    prediction_type: str = "eps",
    learn_variance: bool = False,
    variance_type: str = "fixed_small",
    timesteps: Sequence[int] | None = None,
    stride: int = 1,
    clip_denoised: bool = False,
    num_bins: int = 256,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """Every term of the variational bound for a batch ``x0`` (values on the ``num_bins`` grid in [-1, 1]).

    Loops over timesteps, batched over samples; each term draws its own x_t ~ q(x_t | x0) (one noise draw per sample
    and timestep, from ``generator``). ``model_fn(x_t, t)`` is called on x_t in x0's dtype; the bound's arithmetic is
    done in ``dtype``. With learned variance ``variance_type`` is ignored (learned_range).

    Which timesteps (t = 0, the decoder, is always evaluated):
      default        all T: ``total_bpd`` is the bound itself (each term a one-draw Monte Carlo estimate over x_t).
      stride=k       timesteps 1..T-1 in blocks of k; each sample gets one uniformly random t per block, weighted by
                     the block's size: an UNBIASED but noisier ESTIMATE of the KL sum, with T/k model calls.
      timesteps=...  only those t >= 1; the KL sum is an ESTIMATE by linear interpolation of L_t between them
                     (BIASED where L_t is curved: L_t falls roughly like 1/t at small t, so include dense small t).

    Returns per-sample tensors: ``terms_bpd`` [B, T] (NaN where not evaluated), ``prior_bpd``, ``decoder_bpd``,
    ``kl_bpd`` (the sum of the KL terms over t = 1..T-1, or its estimate) and ``total_bpd`` = prior + decoder + kl.
    """
    check_prediction_type(prediction_type)
    variance_type = "learned_range" if learn_variance else check_variance_type(variance_type)
    if variance_type == "learned_range" and not learn_variance:
        raise ValueError("variance_type='learned_range' needs learn_variance=True")
    T = diffusion.num_timesteps
    plan = [(0, 1, 0.0)] + _evaluation_plan(T, timesteps, stride)
    B, device = x0.shape[0], x0.device
    rows = torch.arange(B, device=device)
    terms = torch.full((B, T), float("nan"), dtype=dtype, device=device)
    kl = torch.zeros(B, dtype=dtype, device=device)
    x0_eval = x0.to(dtype)
    for first, stop, weight in plan:
        if stop - first == 1:
            t = torch.full((B,), first, dtype=torch.long, device=device)
        else:
            t = torch.randint(first, stop, (B,), generator=generator, device=device)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=device)
        x_t = diffusion.q_sample(x0, t, noise)
        pred, values = split_output(model_fn(x_t, t), x0, learn_variance)
        x_t = x_t.to(dtype)
        values = None if values is None else values.to(dtype)
        mean, log_var, _ = diffusion.reverse.p_mean_log_variance(
            pred.to(dtype), x_t, t, prediction_type, variance_type, values, clip_denoised
        )
        term = vlb_term_bpd(diffusion, x0_eval, x_t, t, mean, log_var, num_bins)
        terms[rows, t] = term
        kl = kl + weight * term
    prior = prior_bpd(diffusion, x0_eval)
    decoder = terms[:, 0]
    total = prior + decoder + kl
    return {"terms_bpd": terms, "prior_bpd": prior, "decoder_bpd": decoder, "kl_bpd": kl, "total_bpd": total}


def _check_on_grid(x: torch.Tensor, num_bins: int) -> None:
    k = (x.double() + 1.0) * (num_bins - 1) / 2.0
    off = (k - k.round()).abs().max().item() if x.numel() else 0.0
    if x.numel() and (x.min().item() < -1.0 - 1e-6 or x.max().item() > 1.0 + 1e-6 or off > 1e-3):
        raise ValueError(
            f"bits/dim needs data on the {num_bins}-level grid -1 + 2k/{num_bins - 1} in [-1, 1]; got values in "
            f"[{x.min().item():.4g}, {x.max().item():.4g}] up to {off:.3g} bins off the grid. "
            "Pass num_bins to match the "
            "data's quantisation (256 for 8-bit images, 17 for sklearn digits), or check_grid=False to score anyway."
        )


@torch.no_grad()
def bits_per_dim(
    model_fn: Callable[..., torch.Tensor],
    diffusion: GaussianDiffusion,
    dataloader: Iterable[Any],
    prediction_type: str = "eps",
    learn_variance: bool = False,
    variance_type: str = "fixed_small",
    timesteps: Sequence[int] | None = None,
    stride: int = 1,
    clip_denoised: bool = False,
    num_bins: int = 256,
    max_batches: int | None = None,
    use_labels: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    check_grid: bool = True,
) -> dict[str, Any]:
    """Negative log-likelihood bound in bits/dim over a data loader (improved-diffusion's ``calc_bpd_loop``).

    Batches are tensors or (x, y, ...) sequences; with ``use_labels`` the model is called as ``model_fn(x_t, t, y)``.
    At most ``max_batches`` batches are used. ``timesteps``/``stride`` as in :func:`vlb_terms` (strided results are
    estimates). Returns averages over samples: ``total_bpd``, ``prior_bpd``, ``decoder_bpd``, ``kl_bpd`` (floats),
    ``terms_bpd`` (tensor [T]: the mean of each term over the samples that evaluated it, NaN where none did),
    ``terms_count`` (how many samples evaluated each t), ``num_samples`` and ``total_bpd_stderr`` (the standard error
    of ``total_bpd`` across samples; it includes the Monte Carlo noise of the x_t draws).
    """
    totals: list[torch.Tensor] = []
    sums: dict[str, torch.Tensor | float] = {"prior_bpd": 0.0, "decoder_bpd": 0.0, "kl_bpd": 0.0}
    term_sum = torch.zeros(diffusion.num_timesteps, dtype=torch.float64)
    term_count = torch.zeros(diffusion.num_timesteps, dtype=torch.float64)
    for i, batch in enumerate(dataloader):
        if max_batches is not None and i >= max_batches:
            break
        x, y = (batch, None) if torch.is_tensor(batch) else (batch[0], batch[1] if len(batch) > 1 else None)
        if device is not None:
            x = x.to(device)
            y = y.to(device) if torch.is_tensor(y) else y
        if check_grid:
            _check_on_grid(x, num_bins)
        if use_labels:
            if y is None:
                raise ValueError("use_labels=True but the batches carry no labels")
            fn = lambda x_t, t, _y=y: model_fn(x_t, t, _y)  # noqa: E731
        else:
            fn = model_fn
        out = vlb_terms(
            fn, diffusion, x, prediction_type, learn_variance, variance_type, timesteps, stride, clip_denoised,
            num_bins, generator,
        )
        totals.append(out["total_bpd"].cpu())
        for key in sums:
            sums[key] = sums[key] + out[key].sum().item()
        terms = out["terms_bpd"].cpu().double()
        term_sum += terms.nan_to_num(0.0).sum(dim=0)
        term_count += (~terms.isnan()).sum(dim=0)
    if not totals:
        raise ValueError("bits_per_dim got no batches")
    total = torch.cat(totals)
    n = total.numel()
    return {
        "total_bpd": total.mean().item(),
        "total_bpd_stderr": (total.std().item() / math.sqrt(n)) if n > 1 else float("nan"),
        "prior_bpd": float(sums["prior_bpd"]) / n,
        "decoder_bpd": float(sums["decoder_bpd"]) / n,
        "kl_bpd": float(sums["kl_bpd"]) / n,
        "terms_bpd": term_sum / term_count,
        "terms_count": term_count.long(),
        "num_samples": n,
    }
