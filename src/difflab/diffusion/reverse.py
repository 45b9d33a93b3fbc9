"""The model's reverse step p(x_{t-1} | x_t), on the full chain of T steps or on a sampler's respaced one.

A chain is a sequence of timesteps t_0 < t_1 < ... < t_{S-1} with alpha-bars abar_i (and abar = 1 before t_0):
all T steps of the schedule (training, the variational bound) or the steps a sampler selects (Nichol & Dhariwal
2021, Sec. 4). Step i goes from t_i down to t_{i-1} with

    beta_i  = 1 - abar_i / abar_{i-1}          (the schedule's beta_t on the full chain)

and the forward process's posterior over it (Ho et al. 2020, eqs. 6-7):

    q(x_{i-1} | x_i, x0) = N(mu~_i, beta~_i I)
    mu~_i   = sqrt(abar_{i-1}) beta_i / (1 - abar_i) x0 + sqrt(1 - beta_i) (1 - abar_{i-1}) / (1 - abar_i) x_i
    beta~_i = (1 - abar_{i-1}) / (1 - abar_i) beta_i

beta~_0 = 0, so its log is clipped to log beta~_1, as improved-diffusion does (and floored at log 1e-20 for a
one-step chain). The model's step is p(x_{i-1} | x_i) = N(mu, Sigma), with mu = mu~_i at the x0 the network
predicts (from eps, x0 or v) and Sigma one of (``variance_type``):

    fixed_small    Sigma_i = beta~_i (clipped as above)
    fixed_large    Sigma_i = beta_i for i >= 1, and the clipped beta~ at i = 0 (improved-diffusion's choice, which
                   gives the decoder a sensible variance; Ho et al. used beta there)
    learned_range  log Sigma_i = frac log beta_i + (1 - frac) log beta~_i (clipped), frac = (v + 1) / 2, with v the
                   network's extra output channels (Nichol & Dhariwal 2021, eq. 15). v is not clamped: values
                   outside [-1, 1] extrapolate, as in improved-diffusion.

A network with a learned variance outputs 2C channels along dim 1 for data with C channels ([B, 2C, H, W] for
images, [B, 2D] for flat data): the first C are the prediction, the last C the values v (``split_output``).

Pure tensor code: no Lightning or Hydra.
"""

from __future__ import annotations

import torch

from difflab.diffusion.parameterization import broadcast_to, to_x0_eps

__all__ = ["VARIANCE_TYPES", "ReverseProcess", "check_variance_type", "gather", "split_output"]

VARIANCE_TYPES = ("fixed_small", "fixed_large", "learned_range")


def check_variance_type(variance_type: str, key: str = "variance_type") -> str:
    """Return ``variance_type`` or raise a ValueError naming ``key`` and the accepted values."""
    if variance_type not in VARIANCE_TYPES:
        raise ValueError(f"{key}={variance_type!r} is not known; choose one of {list(VARIANCE_TYPES)}")
    return variance_type


def gather(
    values: torch.Tensor, index: torch.Tensor, like: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """values[index] reshaped to broadcast against ``like``, on index's device, in ``dtype`` (default like's dtype)."""
    out = values.to(index.device)[index]
    return broadcast_to(out, like).to(like.dtype if dtype is None else dtype)


def split_output(
    output: torch.Tensor, like: torch.Tensor, learn_variance: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(prediction, learned-range values v or None) from a network output for data shaped like ``like`` (x_t or x0).

    An output of the data's shape is the prediction alone (v is None). One with twice the data's channels along
    dim 1 is split into its first C channels (the prediction) and its last C (v). ``learn_variance`` True or False
    accepts only the one or the other; None (samplers) accepts both. Any other shape is a ValueError.
    """
    same = output.shape == like.shape
    doubled = (
        like.ndim >= 2 and output.ndim == like.ndim and output.shape[0] == like.shape[0]
        and output.shape[2:] == like.shape[2:] and output.shape[1] == 2 * like.shape[1]
    )
    if same and learn_variance is not True:
        return output, None
    if doubled and learn_variance is not False:
        c = like.shape[1]
        return output[:, :c], output[:, c:]
    channels = 2 * like.shape[1] if like.ndim >= 2 else "?"
    two_c = f"2C = {channels} channels on dim 1 (prediction, then learned-variance values)"
    if learn_variance is None:
        expected = f"the data's shape, or {two_c}"
    else:
        expected = two_c if learn_variance else "the data's shape (no learned variance)"
    raise ValueError(
        f"model output has shape {tuple(output.shape)} for x_t of shape {tuple(like.shape)}; expected {expected} "
        "(size the backbone with objective.output_channels_factor)"
    )


class ReverseProcess:
    """The Gaussian steps of one chain (see the module docstring) as float64 tables indexed by step 0..S-1.

    ``alphas_cumprod``: the chain's alpha-bars in increasing t (for a sampler: alpha-bar at its selected timesteps,
    reversed). ``betas``: the chain's betas when known exactly (the schedule's, for the full chain); by default
    1 - abar_i / abar_{i-1}. Methods take ``step``, a LongTensor [B] of indices into the chain (the timestep itself
    on the full chain).
    """

    def __init__(self, alphas_cumprod: torch.Tensor, betas: torch.Tensor | None = None) -> None:
        ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if ab.ndim != 1 or ab.numel() < 1:
            raise ValueError(f"alphas_cumprod must be a non-empty 1-D tensor, got shape {tuple(ab.shape)}")
        ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])
        betas = 1.0 - ab / ab_prev if betas is None else torch.as_tensor(betas, dtype=torch.float64)
        self.alphas_cumprod = ab
        self.alphas_cumprod_prev = ab_prev
        self.betas = betas
        self.posterior_variance = betas * (1.0 - ab_prev) / (1.0 - ab)
        first = self.posterior_variance[1:2] if ab.numel() > 1 else self.posterior_variance[:1]
        self.posterior_log_variance_clipped = torch.cat([first, self.posterior_variance[1:]]).clamp(min=1e-20).log()
        self.log_betas = torch.log(betas)
        self.posterior_mean_coef_x0 = betas * ab_prev.sqrt() / (1.0 - ab)
        self.posterior_mean_coef_xt = (1.0 - ab_prev) * (1.0 - betas).sqrt() / (1.0 - ab)

    @property
    def num_steps(self) -> int:
        """S, the number of steps of the chain."""
        return int(self.alphas_cumprod.numel())

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, step: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{i-1} | x_i, x0), in x_t's dtype."""
        mean = (
            gather(self.posterior_mean_coef_x0, step, x_t) * x0 + gather(self.posterior_mean_coef_xt, step, x_t) * x_t
        )
        return mean, gather(self.posterior_variance, step, x_t), gather(self.posterior_log_variance_clipped, step, x_t)

    def log_variance_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log beta~ clipped, log beta) per step, float64 [S]: fixed_small, and the ends of learned_range."""
        return self.posterior_log_variance_clipped, self.log_betas

    def log_variance(
        self,
        step: torch.Tensor,
        like: torch.Tensor,
        variance_type: str,
        var_values: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """log Sigma of the model's step, broadcastable against ``like``, computed in ``dtype`` (default like's)."""
        check_variance_type(variance_type)
        dtype = like.dtype if dtype is None else dtype
        clipped = self.posterior_log_variance_clipped
        if variance_type == "fixed_small":
            return gather(clipped, step, like, dtype)
        if variance_type == "fixed_large":
            return gather(torch.cat([clipped[:1], self.log_betas[1:]]), step, like, dtype)
        if var_values is None:
            raise ValueError("variance_type='learned_range' needs the network's variance outputs")
        frac = (var_values.to(dtype) + 1.0) / 2.0
        return frac * gather(self.log_betas, step, like, dtype) + (1.0 - frac) * gather(clipped, step, like, dtype)

    def p_mean_log_variance(
        self,
        prediction: torch.Tensor,
        x_t: torch.Tensor,
        step: torch.Tensor,
        prediction_type: str,
        variance_type: str = "fixed_small",
        var_values: torch.Tensor | None = None,
        clip_denoised: bool = False,
        log_variance_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, log-variance and predicted x0 of the model's p(x_{i-1} | x_i).

        ``prediction`` holds the prediction channels only (see ``split_output``) and ``var_values`` the v channels
        (learned_range). The mean is the posterior mean at the predicted x0 (clamped to [-1, 1] when
        ``clip_denoised``); mean and x0 are in x_t's dtype, the log-variance in ``log_variance_dtype`` (default
        x_t's).
        """
        alpha_bar = self.alphas_cumprod.to(step.device)[step]
        x0_hat, _ = to_x0_eps(prediction.to(x_t.dtype), x_t, alpha_bar, prediction_type)
        if clip_denoised:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior(x0_hat, x_t, step)
        return mean, self.log_variance(step, x_t, variance_type, var_values, log_variance_dtype), x0_hat
