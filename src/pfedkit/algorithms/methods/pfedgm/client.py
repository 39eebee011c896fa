"""pFedGM's client side (paper R5-R7; spec §1, §5, §6): the statistic extractor, the local
fusion of the broadcast prior with the client's statistics (Kalman gain, fixed K, or the
pFedFDA-style cross-validated interpolation), and the Bayesian head."""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from pfedkit.algorithms.methods.pfedgm.hparams import PFedGMHParams
from pfedkit.algorithms.toolkit.training import features_in_batches
from pfedkit.models.split import SplitModel
from pfedkit.stats import (
    STATS_DTYPE,
    ClassStats,
    GaussianHead,
    GlobalPrior,
    PersonalGaussian,
    StudentTHead,
    class_stats,
    interpolate,
    local_fusion,
    shrink,
    tied_covariance,
)
from pfedkit.stats.folds import cross_validated_choice


@torch.no_grad()
def statistic_extractor(model: SplitModel, x: Tensor, y: Tensor, num_classes: int) -> ClassStats:
    """The statistic extractor (R5): (n_kc, mu_hat_kc, S_k) of f_theta(x) in one no-grad pass.

    Args:
        model: the workspace model (its body is used in eval mode).
        x: (n, C, H, W) images; y: (n,) labels.
    Returns:
        ClassStats, float64, on the features' device (zeros when n = 0).
    """
    if y.numel() == 0:
        return ClassStats.empty(num_classes, model.feature_dim, device=x.device)
    return class_stats(features_in_batches(model, x), y, num_classes)


def dirichlet_class_prior(counts: Tensor, prior: GlobalPrior, a0: float) -> Tensor:
    """pi_kc = (n_kc + a0 pi_g,c) / (n_k + a0) (spec §5), (C,) float64."""
    pi_g = prior.class_prior.to(counts.device)
    n_k = float(counts.sum())
    return (counts + a0 * pi_g) / (n_k + a0) if n_k + a0 > 0 else pi_g.clone()


def interpolated_gaussian(local: ClassStats, prior: GlobalPrior, beta: float, a0: float, eps: float
                          ) -> PersonalGaussian:
    """pFedFDA-style personal Gaussian (ablation ``gain = interpolate``): means and covariance
    ``beta * local + (1 - beta) * global``; a class the client lacks takes the global mean and
    one the prior lacks the local mean."""
    device = local.means.device
    available = prior.available.to(device)
    local_cov = shrink(tied_covariance(local), eps)
    means, cov = interpolate(local.means, local_cov, prior.means.to(device), prior.cov.to(device), beta,
                             present=local.present & available)
    unknown = local.present & ~available
    means[unknown] = local.means[unknown]
    spread_tr = prior.spread.to(device).diagonal(dim1=-2, dim2=-1).sum(-1)
    gain = torch.where(local.present, torch.full_like(spread_tr, beta), torch.zeros_like(spread_tr))
    gain[unknown] = 1.0
    return PersonalGaussian(
        means=means, cov=cov, class_prior=dirichlet_class_prior(local.counts, prior, a0), gain=gain,
        mean_uncertainty=(1.0 - gain) * spread_tr,
        kappa=torch.tensor(beta, dtype=STATS_DTYPE, device=device),
        num_samples=torch.tensor(local.total, dtype=STATS_DTYPE, device=device),
    )


def interpolation_beta(z: Tensor, y: Tensor, prior: GlobalPrior, hp: PFedGMHParams, generator: torch.Generator
                       ) -> float:
    """beta in [0, 1] minimising the k-fold cross-validated CE of the interpolated Gaussian head
    on the client's training features z (n, d), labels y (n,): the grid of ``beta_grid`` points
    through `pfedkit.stats.folds.cross_validated_choice` (first minimum wins). Classes with
    fewer than ``cv_folds`` samples are left out; 0 (the global statistics) when no CV is
    possible."""
    c = prior.num_classes

    def fit_fold(train: Tensor) -> ClassStats:
        return class_stats(z[train], y[train], c)

    def fold_loss(beta: float, stats: ClassStats, test: Tensor) -> float:
        head = GaussianHead.from_personal(interpolated_gaussian(stats, prior, beta, hp.a0, hp.shrinkage))
        return float(F.cross_entropy(head.logits(z[test]), y[test]))

    grid = torch.linspace(0.0, 1.0, hp.beta_grid).tolist()
    best = cross_validated_choice(y, c, hp.cv_folds, generator, grid, fit_fold, fold_loss)
    return 0.0 if best is None else best


def covariance_weight(z: Tensor, y: Tensor, prior: GlobalPrior, hp: PFedGMHParams, generator: torch.Generator
                      ) -> float | None:
    """kappa in [0, 1], the weight of the client's covariance in Sigma_k (``cov_weight =
    cross_validated``): the point of a ``beta_grid`` grid whose head (the local fusion with that
    kappa, Bayes' rule at ``head_temperature``) has the smallest ``cv_folds``-fold cross-validated
    CE on the client's training features z (n, d), labels y (n,) (first minimum wins; classes with
    fewer than ``cv_folds`` samples are left out). None when no CV is possible."""
    c = prior.num_classes

    def fit_fold(train: Tensor) -> ClassStats:
        return class_stats(z[train], y[train], c)

    def fold_loss(kappa: float, stats: ClassStats, test: Tensor) -> float:
        personal = local_fusion(stats, prior, gain_form=hp.gain_form, nu0=hp.nu0, a0=hp.a0, eps=hp.shrinkage,
                                noise_cov=hp.noise_cov, kappa=kappa)
        log_p = bayes_head(personal, hp.predictive, hp.nu0, hp.head_temperature)(z[test])
        return float(F.nll_loss(log_p, y[test]))

    grid = torch.linspace(0.0, 1.0, hp.beta_grid, dtype=torch.float64).tolist()
    return cross_validated_choice(y, c, hp.cv_folds, generator, grid, fit_fold, fold_loss)


def personal_gaussian(z: Tensor, y: Tensor, prior: GlobalPrior, hp: PFedGMHParams,
                      generator: torch.Generator | None = None) -> PersonalGaussian:
    """Local-level fusion (R6, R7, spec §5): the client's statistics (likelihood) fused with the
    broadcast prior.

    Args:
        z: (n, d) the client's training features under the current body; y: (n,) labels.
        prior: the broadcast GlobalPrior.
        hp: ``gain`` picks the Kalman gain (``gain_form``), K = 0, K = 1 or the CV'd beta.
        generator: randomness of the CV folds (``gain = interpolate``, ``cov_weight = cross_validated``).
    """
    local = class_stats(z, y, prior.num_classes) if y.numel() else ClassStats.empty(
        prior.num_classes, prior.dim, device=prior.means.device)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    if hp.gain == "interpolate":
        beta = interpolation_beta(z, y, prior, hp, gen) if y.numel() else 0.0
        return interpolated_gaussian(local, prior, beta, hp.a0, hp.shrinkage)
    kappa = None  # n_k / (n_k + nu0), also when the client is too small to cross-validate
    if hp.cov_weight == "cross_validated" and y.numel():
        kappa = covariance_weight(z, y, prior, hp, gen)
    fixed = {"kalman": None, "global": 0.0, "local": 1.0}[hp.gain]
    return local_fusion(local, prior, gain_form=hp.gain_form, nu0=hp.nu0, a0=hp.a0, eps=hp.shrinkage,
                        fixed_gain=fixed, noise_cov=hp.noise_cov, kappa=kappa)


def bayes_head(personal: PersonalGaussian, predictive: str, nu0: float, temperature: float = 1.0
               ) -> Callable[[Tensor], Tensor]:
    """Bayesian class probabilities (R7, spec §6): (N, d) features -> (N, C) float32 log p(y=c | z).

    ``plugin``: p ∝ pi_kc N(z; mu_kc, Sigma_k) (tied covariance, stored as W, b);
    ``student_t``: the Normal-inverse-Wishart posterior predictive (`StudentTHead.from_personal`).
    ``temperature`` T multiplies every covariance of the predictive (Sigma_k and the means'
    uncertainty); for the plug-in head, whose covariance is tied, the class log-likelihoods are
    divided by T and the class prior pi_kc is untouched. T = 1 is the spec's head.
    """
    if temperature != 1.0:
        personal = dataclasses.replace(personal, cov=personal.cov * temperature,
                                       mean_uncertainty=personal.mean_uncertainty * temperature)
    if predictive == "student_t":
        t_head = StudentTHead.from_personal(personal, nu0)
        return lambda z: t_head.predict_log_proba(z).to(torch.float32)
    head = GaussianHead.from_personal(personal)
    return head.predict_log_proba


def _prior_on(prior: GlobalPrior, device: torch.device) -> GlobalPrior:
    """The prior with every tensor on ``device``."""
    return GlobalPrior(**{k: getattr(prior, k).to(device) for k in prior.__dataclass_fields__})
