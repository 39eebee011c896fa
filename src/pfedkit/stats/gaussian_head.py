"""Tied-covariance Gaussian classifier stored as a linear layer (pFedGM spec §6, pFedFDA).

Paper's words (abstract): "Bayesian inference for class probability estimation". Our
reading: p(y = c | z) ∝ pi_c N(z; mu_c, Sigma) with one covariance Sigma for all classes
(spec §6), which is linear in z:

    log pi_c + log N(z; mu_c, Sigma) = z^T W_c + b_c + const(z),
    W_c = Sigma^-1 mu_c,   b_c = log pi_c - 1/2 mu_c^T Sigma^-1 mu_c,
    const(z) = -1/2 z^T Sigma^-1 z - 1/2 log det(2 pi Sigma)       (same for every class)

W and b are computed in float64 with a Cholesky solve and stored in the inference dtype
(float32 by default). Class-prior probabilities of 0 are floored at log-prior
`LOG_PRIOR_FLOOR` so logits stay finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pfedkit.stats._linalg import safe_cholesky
from pfedkit.stats.fusion import PersonalGaussian
from pfedkit.stats.sufficient import STATS_DTYPE

LOG_PRIOR_FLOOR = -1.0e4


def log_class_prior(class_prior: Tensor) -> Tensor:
    """log pi, (C,) float64, with probabilities of 0 mapped to `LOG_PRIOR_FLOOR` (finite)."""
    pi = class_prior.to(STATS_DTYPE)
    if (pi < 0).any():
        raise ValueError("class prior has negative entries")
    return torch.where(pi > 0, pi.clamp_min(1e-300).log(), torch.full_like(pi, LOG_PRIOR_FLOOR)).clamp_min(
        LOG_PRIOR_FLOOR
    )


@dataclass(frozen=True)
class GaussianHead:
    """Linear form of a tied-covariance Gaussian classifier: logits = z W^T + b.

    Attributes:
        weight: (C, d), W.
        bias: (C,), b.
    """

    weight: Tensor
    bias: Tensor

    @classmethod
    def from_gaussians(
        cls,
        means: Tensor,
        cov: Tensor,
        class_prior: Tensor | None = None,
        log_prior: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> GaussianHead:
        """Build W, b from class means (C, d), a tied covariance (d, d) and a class prior.

        Give either `class_prior` (C,) probabilities or `log_prior` (C,); neither means
        a uniform prior. `cov` must be positive semi-definite; a singular one is
        regularised with a tiny relative jitter (see `safe_cholesky`).
        """
        if class_prior is not None and log_prior is not None:
            raise ValueError("give class_prior or log_prior, not both")
        mu = means.to(STATS_DTYPE)
        c, d = mu.shape
        if cov.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}), got {tuple(cov.shape)}")
        if log_prior is None:
            log_prior = (
                log_class_prior(class_prior)
                if class_prior is not None
                else torch.full((c,), -math.log(c), dtype=STATS_DTYPE, device=mu.device)
            )
        log_prior = log_prior.to(STATS_DTYPE).to(mu.device)
        lower = safe_cholesky(cov.to(STATS_DTYPE).to(mu.device))
        precision_means = torch.cholesky_solve(mu.T, lower)  # (d, C) = Sigma^-1 mu^T
        weight = precision_means.T
        bias = log_prior - 0.5 * (mu * weight).sum(1)
        return cls(weight=weight.to(dtype), bias=bias.to(dtype))

    @classmethod
    def from_personal(cls, personal: PersonalGaussian, dtype: torch.dtype = torch.float32) -> GaussianHead:
        """The plug-in head of a client's PersonalGaussian (spec §6)."""
        return cls.from_gaussians(personal.means, personal.cov, class_prior=personal.class_prior, dtype=dtype)

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def logits(self, z: Tensor) -> Tensor:
        """(N, d) features -> (N, C) logits = log pi_c + log N(z; mu_c, Sigma) + const(z)."""
        z = z.to(self.weight.dtype)
        return z @ self.weight.T + self.bias

    def predict_log_proba(self, z: Tensor) -> Tensor:
        """(N, d) -> (N, C) log p(y = c | z) (Bayes' rule, normalised over classes)."""
        return torch.log_softmax(self.logits(z), dim=-1)

    def predict(self, z: Tensor) -> Tensor:
        """(N, d) -> (N,) int64 most probable class."""
        return self.logits(z).argmax(-1)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GaussianHead:
        """Move or cast W and b."""
        return GaussianHead(self.weight.to(device=device, dtype=dtype), self.bias.to(device=device, dtype=dtype))

    def to_payload(self, prefix: str = "") -> dict[str, Tensor]:
        """{prefix+"weight": (C, d), prefix+"bias": (C,)}."""
        return {f"{prefix}weight": self.weight, f"{prefix}bias": self.bias}

    @classmethod
    def from_payload(cls, payload: dict[str, Tensor], prefix: str = "") -> GaussianHead:
        """Inverse of `to_payload`."""
        return cls(weight=payload[f"{prefix}weight"], bias=payload[f"{prefix}bias"])
