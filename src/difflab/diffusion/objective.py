"""The training objective: what the network predicts, how its error is measured and weighted, and the VLB term.

The simple loss of Ho et al. 2020 (eq. 14), E_{t, x0, eps} w(t) d(target, net(x_t, t)), with an elementwise
distance d (l2, l1 or huber) and a per-timestep weight w (uniform or Min-SNR-gamma), and optionally the learned
reverse variance of Improved DDPM (Nichol & Dhariwal 2021, Sec. 3.1) trained through the variational bound (the
model's reverse step is in ``reverse.py``, the bound's terms in ``nll.py``).

Loss weights. Min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy",
Sec. 3.4): measured as an error in x0, the loss at a timestep with signal-to-noise ratio SNR = abar / (1 - abar)
gets the weight min(SNR, gamma). The same weighting expressed for the other targets follows from the exact
relations between their errors at a fixed x_t (a = sqrt(abar), s = sqrt(1 - abar)):

    x0 error  = -(s / a) eps error,   so ||x0 err||^2 = ||eps err||^2 / SNR
    v  error  =  eps error / a,       so ||v err||^2  = ||eps err||^2 (SNR + 1) / SNR

which gives

    eps:  w = min(SNR, gamma) / SNR      (= min(1, gamma / SNR), the form used here: finite at SNR = 0)
    x0:   w = min(SNR, gamma)
    v:    w = min(SNR, gamma) / (SNR + 1)

and w_eps ||eps err||^2 = w_x0 ||x0 err||^2 = w_v ||v err||^2 for the same prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from difflab.diffusion import nll
from difflab.diffusion.parameterization import check_prediction_type, target_for
from difflab.diffusion.process import GaussianDiffusion
from difflab.diffusion.reverse import split_output
from difflab.utils.checks import check_int, check_number

__all__ = [
    "DiffusionObjective",
    "LOSSES",
    "VLB_MODES",
    "WEIGHTINGS",
    "check_weighting",
    "elementwise_loss",
    "loss_weight",
    "timestep_quartile_means",
]

LOSSES = ("l2", "l1", "huber")
WEIGHTINGS = ("uniform", "min_snr")
VLB_MODES = ("none", "hybrid", "only")


def elementwise_loss(
    pred: torch.Tensor, target: torch.Tensor, loss: str = "l2", huber_delta: float = 1.0
) -> torch.Tensor:
    """The elementwise distance between prediction and target.

    l2:    (pred - target)^2
    l1:    |pred - target|
    huber: torch's ``huber_loss`` with ``delta``: 0.5 e^2 for |e| <= delta, else delta (|e| - 0.5 delta). It is
           0.5 l2 for small errors (not l2), and delta * smooth_l1 with beta = delta.
    """
    if loss == "l2":
        return (pred - target) ** 2
    if loss == "l1":
        return (pred - target).abs()
    if loss == "huber":
        return F.huber_loss(pred, target, reduction="none", delta=huber_delta)
    raise ValueError(f"objective.loss={loss!r} is not known; choose one of {list(LOSSES)}")


def check_weighting(weighting: str, gamma: float = 5.0) -> str:
    """Return ``weighting`` or raise a ValueError naming the accepted values; gamma must be > 0."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"objective.weighting={weighting!r} is not known; choose one of {list(WEIGHTINGS)}")
    check_number("objective.min_snr_gamma", gamma, 0.0, low_open=True)
    return weighting


def loss_weight(
    snr: torch.Tensor, prediction_type: str, weighting: str = "uniform", gamma: float = 5.0
) -> torch.Tensor:
    """The loss weight at signal-to-noise ratio ``snr`` (any shape, computed in float64) for a network predicting
    ``prediction_type``: 1 for ``uniform``, the Min-SNR-gamma weight of the module docstring for ``min_snr``."""
    check_prediction_type(prediction_type)
    check_weighting(weighting, gamma)
    snr = torch.as_tensor(snr, dtype=torch.float64)
    if weighting == "uniform":
        return torch.ones_like(snr)
    if prediction_type == "eps":
        return (gamma / snr).clamp(max=1.0)
    clipped = snr.clamp(max=gamma)
    if prediction_type == "x0":
        return clipped
    return clipped / (snr + 1.0)


def timestep_quartile_means(values: torch.Tensor, t: torch.Tensor, num_timesteps: int) -> dict[int, torch.Tensor]:
    """The mean of per-sample ``values`` [B] within each quartile of their timesteps ``t`` [B], as improved-diffusion's
    ``loss_q0..q3``: quartile q = floor(4 t / T) holds t in [q T/4, (q + 1) T/4). Quartiles without a sample are left
    out. The values are detached; one host sync (the counts)."""
    quartile = torch.div(4 * t, num_timesteps, rounding_mode="floor")
    counts = torch.bincount(quartile, minlength=4).tolist()
    sums = torch.zeros(4, dtype=values.dtype, device=values.device).index_add_(0, quartile, values.detach())
    return {q: sums[q] / counts[q] for q in range(4) if counts[q]}


@dataclass
class DiffusionObjective:
    """What the network predicts and how its error is measured.

    prediction_type  eps | x0 | v (diffusers' names).
    loss             l2 | l1 | huber (``elementwise_loss``; huber uses torch's convention with ``huber_delta``).
                     Each sample's loss is the mean over its dimensions.
    weighting        uniform | min_snr: the per-sample simple loss is multiplied by ``loss_weight(SNR_t, ...)``
                     with ``min_snr_gamma`` (Hang et al. 2023). It weights the simple loss only, never the VLB term.
    learn_variance   the network outputs 2C channels along dim 1: C for the prediction, C for the learned-range
                     variance v in [-1, 1] (Nichol & Dhariwal 2021, eq. 15). Needs vlb=hybrid or only.
    vlb              none | hybrid | only. With L_t the bound's term at the sample's timestep in bits/dim
                     (``nll.vlb_term_bpd``), T * L_t is an unbiased estimate of the bound's sum over timesteps
                     sum_{t=0}^{T-1} L_t under uniformly drawn t (the prior term L_T is constant and left out):
                       hybrid: L_simple + vlb_weight * T * L_t, where the mean in L_t is computed from the
                               prediction with a stop-gradient, so the VLB term trains only the variance
                               (L_hybrid of Nichol & Dhariwal, lambda = vlb_weight = 0.001; equals
                               improved-diffusion's "rescaled_mse" for any T, and its "mse" + learned sigma at T=1000).
                       only:   T * L_t with gradients through the mean and the variance (improved-diffusion's
                               "rescaled_kl"): its expectation is the bound in bits/dim minus the prior term.
                               ``vlb_weight``, ``loss`` and ``weighting`` do not enter; non-default values of the
                               latter two are rejected. With fixed variance it trains the mean on the bound.
    vlb_weight       lambda of the hybrid loss.
    variance_type    fixed_small | fixed_large: the model's reverse variance when learn_variance is false (used by
                     vlb=only and by the NLL evaluation); ignored (learned_range) when learn_variance is true.
    num_bins         quantisation levels of the data for the decoder term L_0 (256 for 8-bit images).
    """

    prediction_type: str = "eps"
    loss: str = "l2"
    huber_delta: float = 1.0
    weighting: str = "uniform"
    min_snr_gamma: float = 5.0
    learn_variance: bool = False
    vlb: str = "none"
    vlb_weight: float = 0.001
    variance_type: str = "fixed_small"
    num_bins: int = 256

    def __post_init__(self) -> None:
        check_prediction_type(self.prediction_type)
        if self.loss not in LOSSES:
            raise ValueError(f"objective.loss={self.loss!r} is not known; choose one of {list(LOSSES)}")
        if self.loss == "huber":
            check_number("objective.huber_delta", self.huber_delta, 0.0, low_open=True)
        check_weighting(self.weighting, self.min_snr_gamma)
        if self.vlb not in VLB_MODES:
            raise ValueError(f"objective.vlb={self.vlb!r} is not known; choose one of {list(VLB_MODES)}")
        if self.variance_type not in ("fixed_small", "fixed_large"):
            raise ValueError(
                f"objective.variance_type={self.variance_type!r} must be fixed_small or fixed_large "
                "(the learned variance is chosen with objective.learn_variance=true)"
            )
        check_number("objective.vlb_weight", self.vlb_weight, 0.0)
        check_int("objective.num_bins", self.num_bins, 2)
        if self.learn_variance and self.vlb == "none":
            raise ValueError(
                "objective.learn_variance=true needs objective.vlb=hybrid or only: with vlb=none the variance "
                "channels get no gradient"
            )
        if self.vlb == "hybrid" and not self.learn_variance:
            raise ValueError(
                "objective.vlb=hybrid needs objective.learn_variance=true: its VLB term trains only the variance "
                "(the mean is behind a stop-gradient); for the bound with a fixed variance use vlb=only"
            )
        if self.vlb == "only" and (self.weighting != "uniform" or self.loss != "l2"):
            raise ValueError(
                f"objective.vlb=only trains on the variational bound alone; objective.loss={self.loss!r} and "
                f"objective.weighting={self.weighting!r} would have no effect (keep loss=l2, weighting=uniform)"
            )

    # ------------------------------------------------------------------------------ what the caller needs
    @property
    def output_channels_factor(self) -> int:
        """The network's output channels (dim 1) per data channel: 2 with learned variance, else 1."""
        return 2 if self.learn_variance else 1

    @property
    def model_variance_type(self) -> str:
        """The reverse variance of the trained model: learned_range, fixed_small or fixed_large."""
        return "learned_range" if self.learn_variance else self.variance_type

    def nll_kwargs(self) -> dict[str, Any]:
        """Keyword arguments describing this model for ``nll.vlb_terms`` / ``nll.bits_per_dim``."""
        return {
            "prediction_type": self.prediction_type,
            "learn_variance": self.learn_variance,
            "variance_type": self.variance_type,
            "num_bins": self.num_bins,
        }

    def bits_per_dim(
        self, model_fn: Callable[..., torch.Tensor], diffusion: GaussianDiffusion, dataloader: Any, **kwargs: Any
    ) -> dict[str, Any]:
        """``nll.bits_per_dim`` for a model trained with this objective (kwargs: stride, max_batches, use_labels,
        ...)."""
        return nll.bits_per_dim(model_fn, diffusion, dataloader, **{**self.nll_kwargs(), **kwargs})

    # ------------------------------------------------------------------------------ the loss
    def terms(
        self,
        network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        diffusion: GaussianDiffusion,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Per-sample loss and its terms at timesteps ``t`` with the given noise, each of shape [B]:

        loss    what is optimised: ``simple`` (vlb=none), ``simple + vlb_weight * vlb`` (hybrid) or ``vlb`` (only).
        simple  the weighted simple loss. With vlb=only it is not part of the loss: the plain l2 error of the
                prediction, reported for comparison and computed without gradient.
        vlb     T * L_t in bits/dim (vlb=hybrid or only): a one-sample estimate of the bound minus its prior term.
        """
        x_t = diffusion.q_sample(x0, t, noise)
        output = network(x_t, t)
        pred, var_values = split_output(output, x0, self.learn_variance)
        dtype = torch.promote_types(x0.dtype, torch.float32)
        T = diffusion.num_timesteps
        target = target_for(self.prediction_type, x0, noise, diffusion.alpha_bar(t))
        monitored = pred.detach() if self.vlb == "only" else pred
        err = elementwise_loss(monitored.to(dtype), target.to(dtype), self.loss, self.huber_delta)
        simple = err.flatten(1).mean(dim=1)
        if self.weighting != "uniform":
            snr = diffusion.schedule.snr.to(t.device)[t]
            simple = simple * loss_weight(snr, self.prediction_type, self.weighting, self.min_snr_gamma).to(dtype)
        out: dict[str, torch.Tensor] = {"simple": simple}
        loss = 0.0 if self.vlb == "only" else simple
        if self.vlb != "none":
            mean_pred = pred.detach() if self.vlb == "hybrid" else pred
            x0_, x_t_ = x0.to(dtype), x_t.to(dtype)
            mean, log_var, _ = diffusion.reverse.p_mean_log_variance(
                mean_pred.to(dtype), x_t_, t, self.prediction_type, self.model_variance_type,
                None if var_values is None else var_values.to(dtype),
            )
            vb = nll.vlb_term_bpd(diffusion, x0_, x_t_, t, mean, log_var, self.num_bins)
            out["vlb"] = T * vb
            loss = loss + T * (self.vlb_weight if self.vlb == "hybrid" else 1.0) * vb
        out["loss"] = loss
        return out

    def __call__(
        self,
        network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        diffusion: GaussianDiffusion,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        """Per-sample loss of shape [B] at timesteps ``t`` with the given noise."""
        return self.terms(network, diffusion, x0, t, noise)["loss"]
