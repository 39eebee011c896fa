"""Student-t posterior-predictive classifier (pFedGM spec §6, `gm.predictive = student_t`).

The spec names "the Normal-inverse-Wishart posterior predictive"; the parameterisation is
ours. Model (tied covariance, one mean per class):

    Sigma        ~ IW(Psi_0 = nu0 * Sigma_g,  nu0 + d + 1)      so E[Sigma] = Sigma_g
    mu_c | Sigma ~ N(m0_c, Sigma / kappa0_c),                   m0_c = global mean mu_g,c

nu0 > 0 is a pseudo-count for the covariance (the same role as nu0 in the spec's
kappa_k = n_k / (n_k + nu0)), kappa0_c > 0 one for class c's mean. The exact posterior is

    kappa_c = kappa0_c + n_c,   m_c = (kappa0_c m0_c + n_c xbar_c) / kappa_c
    Psi     = nu0 Sigma_g + S + sum_c kappa0_c n_c / kappa_c (xbar_c - m0_c)(xbar_c - m0_c)^T
    nu      = nu0 + d + 1 + n

and the predictive density of a new z of class c is a multivariate t with
nu - d + 1 = nu0 + n + 2 degrees of freedom, location m_c and scale
Psi (kappa_c + 1) / (kappa_c (nu0 + n + 2)). The class scales differ only by the scalar
(kappa_c + 1) / kappa_c, so one Cholesky factor serves all classes.

`StudentTHead.from_personal` applies the same predictive to pFedGM's Kalman-fused
Gaussians (our reading): location mu_kc, E[Sigma | data] = Sigma_k (so Psi = (nu0 + n_k)
Sigma_k), and 1 / kappa_c = tr((I - K_kc) P_c) / tr(Sigma_k), the Kalman posterior
covariance of the mean measured in units of Sigma_k. As counts grow, dof -> inf,
(I - K) P -> 0 and the predictive tends to the plug-in Gaussian of `GaussianHead`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pfedkit.stats._linalg import batch_trace, safe_cholesky, symmetrize
from pfedkit.stats.fusion import PersonalGaussian
from pfedkit.stats.gaussian_head import log_class_prior
from pfedkit.stats.sufficient import STATS_DTYPE, ClassStats


@dataclass(frozen=True)
class StudentTHead:
    """Classifier p(y = c | z) ∝ pi_c t_dof(z; loc_c, scale_factor_c * scale).

    Attributes:
        loc: (C, d) float64, class locations.
        scale_tril: (d, d) float64, lower Cholesky factor of the shared scale matrix.
        scale_factor: (C,) float64 > 0, per-class multiplier of the scale matrix.
        dof: () float64 > 0, degrees of freedom.
        log_prior: (C,) float64, log pi_c.
    """

    loc: Tensor
    scale_tril: Tensor
    scale_factor: Tensor
    dof: Tensor
    log_prior: Tensor

    @classmethod
    def from_scale(
        cls, loc: Tensor, scale: Tensor, scale_factor: Tensor, dof: float, class_prior: Tensor
    ) -> StudentTHead:
        """Build from a shared scale matrix (d, d) (PSD; regularised if singular)."""
        if dof <= 0:
            raise ValueError(f"dof must be > 0, got {dof}")
        return cls(
            loc=loc.to(STATS_DTYPE),
            scale_tril=safe_cholesky(scale.to(STATS_DTYPE)),
            scale_factor=scale_factor.to(STATS_DTYPE),
            dof=torch.tensor(float(dof), dtype=STATS_DTYPE, device=loc.device),
            log_prior=log_class_prior(class_prior),
        )

    @classmethod
    def from_personal(cls, personal: PersonalGaussian, nu0: float) -> StudentTHead:
        """Student-t predictive around a client's fused Gaussians (see module doc).

        Args:
            personal: output of `local_fusion`.
            nu0: covariance pseudo-count (> 0, or >= 0 when the client has data).
        """
        n = float(personal.num_samples)
        if nu0 < 0 or nu0 + n <= 0:
            raise ValueError(f"need nu0 >= 0 and nu0 + n_k > 0, got nu0={nu0}, n_k={n}")
        dof = nu0 + n + 2.0
        cov = symmetrize(personal.cov.to(STATS_DTYPE))
        tr_cov = float(batch_trace(cov))
        inv_kappa = personal.mean_uncertainty.to(STATS_DTYPE) / tr_cov if tr_cov > 0 else torch.zeros_like(
            personal.mean_uncertainty
        )
        scale = cov * ((nu0 + n) / dof)
        return cls.from_scale(personal.means, scale, 1.0 + inv_kappa, dof, personal.class_prior)

    @property
    def num_classes(self) -> int:
        return int(self.loc.shape[0])

    def log_joint(self, z: Tensor) -> Tensor:
        """(N, d) features -> (N, C) log pi_c + log t(z; loc_c, scale_factor_c * scale), float64."""
        z = z.to(device=self.loc.device, dtype=STATS_DTYPE)
        d = self.loc.shape[1]
        nu = self.dof
        y = torch.linalg.solve_triangular(self.scale_tril, z.T, upper=False)  # (d, N)
        m = torch.linalg.solve_triangular(self.scale_tril, self.loc.T, upper=False)  # (d, C)
        maha = (y.pow(2).sum(0)[:, None] - 2.0 * (y.T @ m) + m.pow(2).sum(0)[None, :]).clamp_min(0.0)
        maha = maha / self.scale_factor[None, :]
        log_det = 2.0 * self.scale_tril.diagonal().log().sum() + d * self.scale_factor.log()  # (C,)
        log_norm = (
            torch.lgamma((nu + d) / 2.0) - torch.lgamma(nu / 2.0) - 0.5 * d * torch.log(nu * math.pi) - 0.5 * log_det
        )
        log_t = log_norm[None, :] - 0.5 * (nu + d) * torch.log1p(maha / nu)
        return self.log_prior[None, :] + log_t

    def predict_log_proba(self, z: Tensor) -> Tensor:
        """(N, d) -> (N, C) log p(y = c | z), float64."""
        return torch.log_softmax(self.log_joint(z), dim=-1)

    def predict(self, z: Tensor) -> Tensor:
        """(N, d) -> (N,) int64 most probable class."""
        return self.log_joint(z).argmax(-1)


@dataclass(frozen=True)
class NIWPosterior:
    """Normal-inverse-Wishart posterior of the tied-covariance model (see module doc).

    Attributes:
        loc: (C, d) float64, posterior mean of each class mean, m_c.
        kappa: (C,) float64, kappa_c = kappa0_c + n_c.
        psi: (d, d) float64, Psi.
        nu: () float64, inverse-Wishart degrees of freedom nu0 + d + 1 + n.
    """

    loc: Tensor
    kappa: Tensor
    psi: Tensor
    nu: Tensor

    def predictive(self, class_prior: Tensor) -> StudentTHead:
        """The posterior-predictive classifier with class prior (C,) probabilities."""
        d = self.loc.shape[1]
        dof = float(self.nu) - d + 1.0
        return StudentTHead.from_scale(
            self.loc, self.psi / dof, (self.kappa + 1.0) / self.kappa, dof, class_prior
        )

    def mean_cov(self) -> Tensor:
        """E[Sigma | data] = Psi / (nu - d - 1), (d, d)."""
        d = self.loc.shape[1]
        return self.psi / (float(self.nu) - d - 1.0)


def niw_posterior(
    local: ClassStats,
    prior_means: Tensor,
    prior_cov: Tensor,
    kappa0: float | Tensor,
    nu0: float,
) -> NIWPosterior:
    """Exact conjugate posterior of the tied Normal-inverse-Wishart model.

    Args:
        local: the client's ClassStats (n_c, xbar_c, S).
        prior_means: (C, d) m0 (pFedGM: mu_g).
        prior_cov: (d, d) Sigma_g, the prior mean of Sigma.
        kappa0: > 0, scalar or (C,), pseudo-count of each class mean.
        nu0: > 0, pseudo-count of the covariance.
    """
    if nu0 <= 0:
        raise ValueError(f"nu0 must be > 0, got {nu0}")
    c, d = local.num_classes, local.dim
    k0 = torch.as_tensor(kappa0, dtype=STATS_DTYPE, device=local.means.device)
    k0 = k0.expand(c) if k0.ndim == 0 else k0
    if k0.shape != (c,) or (k0 <= 0).any():
        raise ValueError(f"kappa0 must be > 0, scalar or shape ({c},)")
    m0 = prior_means.to(STATS_DTYPE)
    n_c = local.counts
    kappa = k0 + n_c
    loc = (k0[:, None] * m0 + n_c[:, None] * local.means) / kappa[:, None]
    dev = local.means - m0
    between = torch.einsum("c,ci,cj->ij", k0 * n_c / kappa, dev, dev)
    psi = symmetrize(nu0 * prior_cov.to(STATS_DTYPE) + local.scatter + between)
    nu = torch.tensor(nu0 + d + 1.0 + local.total, dtype=STATS_DTYPE, device=loc.device)
    return NIWPosterior(loc=loc, kappa=kappa, psi=psi, nu=nu)
