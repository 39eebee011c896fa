"""Local-level fusion: global prior x local likelihood -> a client's personal Gaussians.

Paper's words (abstract): "we model the global representation distribution as a prior
and the client-specific data as the likelihood, enabling Bayesian inference for class
probability estimation", with a "Kalman-gain-inspired" fusion at the local level.
The formulas are our reading (spec §5). For client k and class c:

    R_kc   = Sigma_hat_k / n_kc                         noise of the local mean
    K_kc   = P_c (P_c + R_kc)^-1                        Kalman gain (0 when n_kc = 0)
    mu_kc  = mu_g,c + K_kc (mu_hat_kc - mu_g,c)
    Sigma_k = kappa_k Sigma_hat_k + (1 - kappa_k) Sigma_g,   kappa_k = n_k / (n_k + nu0)
    pi_kc  = (n_kc + a0 pi_g,c) / (n_k + a0)            Dirichlet posterior mean

With a Gaussian prior N(mu_g,c, P_c) on the class mean and a Gaussian likelihood
N(mu_hat_kc; mu_c, R_kc), mu_kc is exactly the posterior mean
(P^-1 + R^-1)^-1 (P^-1 mu_g + R^-1 mu_hat), and (I - K) P_c its posterior covariance.

Gain forms (flag): "full" (d x d), "diag" (elementwise p / (p + r) on the diagonals),
"scalar" (tr P / (tr P + tr R)); all three agree when P_c and R_kc are isotropic.
Our additions: a class the client holds but the prior has no mean for takes the local
mean; `fixed_gain` (ablation: 0 = global only, 1 = local only) and
`noise_cov="fused"` (use Sigma_k instead of Sigma_hat_k in R, so that a client with a
single sample, whose Sigma_hat_k is 0, is not treated as noise-free). `interpolate` is
pFedFDA's convex combination of local and global statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from pfedkit.stats._linalg import batch_trace, psd_solve, symmetrize
from pfedkit.stats.generator import GlobalPrior
from pfedkit.stats.sufficient import STATS_DTYPE, ClassStats, shrink, tied_covariance

GainForm = Literal["full", "diag", "scalar"]
NoiseCov = Literal["local", "fused"]


@dataclass(frozen=True)
class PersonalGaussian:
    """A client's personalised class-conditional Gaussians (tied covariance).

    Attributes:
        means: (C, d) float64, mu_kc.
        cov: (d, d) float64, Sigma_k (symmetric positive definite when Sigma_g is).
        class_prior: (C,) float64, pi_kc (sums to 1 when pi_g does or the client has data).
        gain: (C,) float64, mean diagonal of K_kc, tr(K_kc)/d (diagnostic; 0 = global
            mean, 1 = local mean).
        mean_uncertainty: (C,) float64, tr((I - K_kc) P_c), the trace of the posterior
            covariance of mu_kc (used by the Student-t predictive).
        kappa: () float64, kappa_k, the weight of the local covariance.
        num_samples: () float64, n_k.
    """

    means: Tensor
    cov: Tensor
    class_prior: Tensor
    gain: Tensor
    mean_uncertainty: Tensor
    kappa: Tensor
    num_samples: Tensor

    def to_payload(self, prefix: str = "") -> dict[str, Tensor]:
        """Named tensors of every field (personal state between rounds)."""
        return {f"{prefix}{k}": getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_payload(cls, payload: dict[str, Tensor], prefix: str = "") -> PersonalGaussian:
        """Inverse of `to_payload`."""
        return cls(**{k: payload[f"{prefix}{k}"] for k in cls.__dataclass_fields__})


def kalman_gain(spread: Tensor, noise: Tensor, form: GainForm) -> Tensor:
    """Kalman gain K = P (P + R)^-1 in one of three forms, batched over classes.

    Args:
        spread: (C, d, d) prior covariances P_c (PSD).
        noise: (C, d, d) observation noise R_c (PSD).
        form: "full" -> (C, d, d); "diag" -> (C, d), p_i / (p_i + r_i) on the diagonals;
            "scalar" -> (C,), tr P / (tr P + tr R). 0/0 (no prior spread and no noise)
            gives 0.

    Returns:
        The gain in the form's shape, float64.
    """
    if form == "full":
        # K^T = (P + R)^-1 P because P and R are symmetric; a singular P + R is
        # regularised by `safe_cholesky` (P = R = 0 gives K = 0).
        return psd_solve(spread + noise, spread).transpose(-1, -2)
    if form == "diag":
        p = spread.diagonal(dim1=-2, dim2=-1)
        r = noise.diagonal(dim1=-2, dim2=-1)
        denom = p + r
        return torch.where(denom > 0, p / denom.clamp_min(1e-300), torch.zeros_like(p))
    if form == "scalar":
        p, r = batch_trace(spread), batch_trace(noise)
        denom = p + r
        return torch.where(denom > 0, p / denom.clamp_min(1e-300), torch.zeros_like(p))
    raise ValueError(f"gain form must be full, diag or scalar, got {form!r}")


def _apply_gain(gain: Tensor, delta: Tensor) -> Tensor:
    """K delta for a gain of any form; delta (C, d) -> (C, d)."""
    if gain.ndim == 3:
        return (gain @ delta[..., None]).squeeze(-1)
    if gain.ndim == 2:
        return gain * delta
    return gain[:, None] * delta


def _gain_times_spread_trace(gain: Tensor, spread: Tensor) -> Tensor:
    """tr(K P) for a gain of any form; (C,)."""
    if gain.ndim == 3:
        return (gain * spread.transpose(-1, -2)).sum((-1, -2))
    if gain.ndim == 2:
        return (gain * spread.diagonal(dim1=-2, dim2=-1)).sum(-1)
    return gain * batch_trace(spread)


def _mean_gain(gain: Tensor) -> Tensor:
    if gain.ndim == 3:
        return batch_trace(gain) / gain.shape[-1]
    if gain.ndim == 2:
        return gain.mean(-1)
    return gain


def local_fusion(
    local: ClassStats,
    prior: GlobalPrior,
    gain_form: GainForm = "full",
    nu0: float = 10.0,
    a0: float = 1.0,
    eps: float = 1e-3,
    fixed_gain: float | None = None,
    noise_cov: NoiseCov = "local",
    kappa: float | None = None,
) -> PersonalGaussian:
    """Fuse a client's statistics with the global prior (spec §5; see module doc).

    Args:
        local: the client's ClassStats (C classes, d dims).
        prior: the broadcast GlobalPrior (mu_g, Sigma_g = prior.cov, P = prior.spread, pi_g).
        gain_form: "full", "diag" or "scalar".
        nu0: >= 0, pseudo-count of Sigma_g in kappa_k = n_k / (n_k + nu0). Our default.
        a0: >= 0, Dirichlet strength of pi_g in the class prior. Our default.
        eps: shrinkage applied to Sigma_hat_k before use.
        fixed_gain: if given (in [0, 1]), K_kc = fixed_gain * I for the classes the
            client holds (ablation); 0 reproduces the global means, 1 the local means.
        noise_cov: "local" (spec: R_kc = Sigma_hat_k / n_kc) or "fused" (Sigma_k / n_kc).
        kappa: if given (in [0, 1]), the weight of Sigma_hat_k in Sigma_k instead of
            n_k / (n_k + nu0) (a weight chosen per client, e.g. by cross-validation).

    Returns:
        PersonalGaussian. Classes the client lacks (n_kc = 0) get K = 0, i.e. mu_g,c.
        Classes the client holds but the prior does not (`prior.available` False) get
        the local mean (our choice; the spec does not cover it).
    """
    if (local.num_classes, local.dim) != (prior.num_classes, prior.dim):
        raise ValueError(
            f"local_fusion: local stats {(local.num_classes, local.dim)} and prior "
            f"{(prior.num_classes, prior.dim)} differ in C or d"
        )
    if nu0 < 0 or a0 < 0:
        raise ValueError(f"nu0 and a0 must be >= 0, got {nu0}, {a0}")
    if fixed_gain is not None and not 0.0 <= fixed_gain <= 1.0:
        raise ValueError(f"fixed_gain must lie in [0, 1], got {fixed_gain}")
    if kappa is not None and not 0.0 <= kappa <= 1.0:
        raise ValueError(f"kappa must lie in [0, 1], got {kappa}")
    if noise_cov not in ("local", "fused"):
        raise ValueError(f"noise_cov must be local or fused, got {noise_cov!r}")
    c = local.num_classes
    device = local.means.device
    prior_means = prior.means.to(device)
    prior_cov = symmetrize(prior.cov.to(device))
    spread = prior.spread.to(device)

    n_k = local.total
    local_cov = shrink(tied_covariance(local), eps)
    if kappa is None:
        kappa = n_k / (n_k + nu0) if (n_k + nu0) > 0 else 0.0
    cov = symmetrize(kappa * local_cov + (1.0 - kappa) * prior_cov)

    gain_mean = torch.zeros(c, dtype=STATS_DTYPE, device=device)
    uncertainty = batch_trace(spread).clone()  # tr P_c: K = 0 for absent classes
    means = prior_means.clone()
    held = torch.nonzero(local.present, as_tuple=False).flatten()
    if held.numel():
        delta = local.means[held] - prior_means[held]
        p_h = spread[held]
        if fixed_gain is not None:
            gain = torch.full((held.numel(),), float(fixed_gain), dtype=STATS_DTYPE, device=device)
        else:
            base = local_cov if noise_cov == "local" else cov
            noise = base[None] / local.counts[held][:, None, None]
            gain = kalman_gain(p_h, noise, gain_form)
        means[held] = prior_means[held] + _apply_gain(gain, delta)
        gain_mean[held] = _mean_gain(gain)
        uncertainty[held] = (batch_trace(p_h) - _gain_times_spread_trace(gain, p_h)).clamp_min(0.0)
        # A class the client holds but the prior has no mean for (no client ever held it
        # globally): there is nothing to fuse with, so take the local mean (gain 1).
        unknown = held[~prior.available.to(device)[held]]
        if unknown.numel() and fixed_gain is None:
            means[unknown] = local.means[unknown]
            gain_mean[unknown] = 1.0
            uncertainty[unknown] = 0.0

    pi_g = prior.class_prior.to(device)
    if n_k + a0 > 0:
        class_prior = (local.counts + a0 * pi_g) / (n_k + a0)
    else:
        class_prior = pi_g.clone()
    return PersonalGaussian(
        means=means,
        cov=cov,
        class_prior=class_prior,
        gain=gain_mean,
        mean_uncertainty=uncertainty,
        kappa=torch.tensor(kappa, dtype=STATS_DTYPE, device=device),
        num_samples=torch.tensor(n_k, dtype=STATS_DTYPE, device=device),
    )


def interpolate(
    local_means: Tensor,
    local_cov: Tensor,
    global_means: Tensor,
    global_cov: Tensor,
    beta: float | Tensor,
    present: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """pFedFDA-style interpolation of local and global Gaussian statistics.

        means = beta * local_means + (1 - beta) * global_means
        cov   = beta * local_cov   + (1 - beta) * global_cov

    Args:
        local_means, global_means: (C, d).
        local_cov, global_cov: (d, d).
        beta: in [0, 1] (1 = local only), a float or a 0-dim tensor.
        present: optional (C,) bool; classes marked False (the client lacks them) take
            the global mean whatever beta is (our choice: a local mean of 0 is no estimate).

    Returns:
        (means (C, d), cov (d, d)) float64.
    """
    b = torch.as_tensor(beta, dtype=STATS_DTYPE)
    if b.ndim != 0 or not 0.0 <= float(b) <= 1.0:
        raise ValueError(f"beta must be a scalar in [0, 1], got {beta}")
    b = float(b)
    lm, gm = local_means.to(STATS_DTYPE), global_means.to(STATS_DTYPE)
    means = b * lm + (1.0 - b) * gm
    if present is not None:
        means = torch.where(present[:, None].to(means.device), means, gm)
    cov = symmetrize(b * local_cov.to(STATS_DTYPE) + (1.0 - b) * global_cov.to(STATS_DTYPE))
    return means, cov
