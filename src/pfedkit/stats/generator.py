"""pFedGM's Gaussian generator with weighted re-sampling, and its moment-matched prior.

Paper's words (abstract): "training a Gaussian generator that models client heterogeneity
via weighted re-sampling". Everything else here is our reading (spec §2):

    G(z | c) = sum_k w_kc N(z; mu_hat_kc, Sigma_pool),     w_kc = n_kc^tau / sum_k' n_k'c^tau

over the clients k holding class c (n_kc > 0). Sampling picks a client component by its
weight, then draws a Gaussian sample. The generator lives on the server; clients receive
only its samples (the virtual-feature bank) and its moment-matched summary, the
`GlobalPrior`:

    mu_g,c      = sum_k w_kc mu_hat_kc                                     mixture mean
    Sigma_pool  = shrink( sum_k S_k / max(sum_k (n_k - C_k), 1) )          within-class
    P_c         = sum_k w_kc (mu_hat_kc - mu_g,c)(mu_hat_kc - mu_g,c)^T    between-client
    pi_g,c      = N_c / N,  N_c = sum_k n_kc                               class prior

so the mixture for class c has mean mu_g,c and covariance Sigma_pool + P_c.
Our choices where the spec is silent: Sigma_pool and pi_g weight clients by their data
(they do not use tau); `tau` only changes which client a virtual sample imitates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from pfedkit.stats._linalg import ClassMeansShape, batch_trace, safe_cholesky, symmetrize
from pfedkit.stats.sufficient import STATS_DTYPE, ClassStats, shrink, stack_class_stats

SpreadForm = Literal["full", "diag", "scalar"]


@dataclass(frozen=True)
class GlobalPrior(ClassMeansShape):
    """Moment-matched summary of the generator; what the server broadcasts (spec §2, §7).

    Also the type of the global filter's output (`GlobalFilterState.to_prior`).

    Attributes:
        means: (C, d) float64, mu_g (0 for unavailable classes).
        cov: (d, d) float64, within-class covariance (Sigma_pool for one round's
            observation, Sigma_g after the global filter).
        spread: (C, d, d) float64, between-client spread P_c (PSD, rank <= m_c - 1).
        class_prior: (C,) float64, pi_g, sums to 1 (0 for unseen classes).
        num_clients: (C,) float64, m_c = clients holding class c in the observation.
        class_counts: (C,) float64, N_c = samples of class c over those clients.
        dof: () float64, degrees of freedom of `cov`, sum_k (n_k - C_k); used as the
            observation noise of the scalar covariance filter (spec §4).
    """

    means: Tensor
    cov: Tensor
    spread: Tensor
    class_prior: Tensor
    num_clients: Tensor
    class_counts: Tensor
    dof: Tensor

    def __post_init__(self) -> None:
        for name in ("means", "cov", "spread", "class_prior", "num_clients", "class_counts", "dof"):
            object.__setattr__(self, name, torch.as_tensor(getattr(self, name)).to(STATS_DTYPE))
        c, d = self.means.shape
        if self.cov.shape != (d, d) or self.spread.shape != (c, d, d):
            raise ValueError(
                f"GlobalPrior: means {tuple(self.means.shape)}, cov {tuple(self.cov.shape)}, "
                f"spread {tuple(self.spread.shape)} are inconsistent"
            )
        for name in ("class_prior", "num_clients", "class_counts"):
            if getattr(self, name).shape != (c,):
                raise ValueError(f"GlobalPrior: {name} must have shape ({c},)")

    @property
    def available(self) -> Tensor:
        """(C,) bool, classes that have a mean (some client held them)."""
        return self.num_clients > 0

    def to_payload(self, prefix: str = "", spread_form: SpreadForm = "full") -> dict[str, Tensor]:
        """Named tensors for the broadcast.

        spread_form compresses P (spec §7): "full" sends (C, d, d); "diag" sends its
        diagonal (C, d) (lossless for the diag gain); "scalar" sends tr(P_c)/d (C,)
        (lossless for the scalar gain). `from_payload` rebuilds a (C, d, d) matrix.
        """
        if spread_form == "full":
            spread = self.spread
        elif spread_form == "diag":
            spread = self.spread.diagonal(dim1=-2, dim2=-1)
        elif spread_form == "scalar":
            spread = batch_trace(self.spread) / self.dim
        else:
            raise ValueError(f"spread_form must be full, diag or scalar, got {spread_form!r}")
        return {
            f"{prefix}means": self.means,
            f"{prefix}cov": self.cov,
            f"{prefix}spread": spread,
            f"{prefix}class_prior": self.class_prior,
            f"{prefix}num_clients": self.num_clients,
            f"{prefix}class_counts": self.class_counts,
            f"{prefix}dof": self.dof,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Tensor], prefix: str = "") -> GlobalPrior:
        """Inverse of `to_payload`; a diag (C, d) or scalar (C,) spread becomes (C, d, d)."""
        means = payload[f"{prefix}means"]
        d = means.shape[1]
        spread = payload[f"{prefix}spread"].to(STATS_DTYPE)
        if spread.ndim == 2:
            spread = torch.diag_embed(spread)
        elif spread.ndim == 1:
            spread = spread[:, None, None] * torch.eye(d, dtype=STATS_DTYPE, device=spread.device)
        return cls(
            means=means,
            cov=payload[f"{prefix}cov"],
            spread=spread,
            class_prior=payload[f"{prefix}class_prior"],
            num_clients=payload[f"{prefix}num_clients"],
            class_counts=payload[f"{prefix}class_counts"],
            dof=payload[f"{prefix}dof"],
        )


@dataclass(frozen=True)
class GaussianGenerator:
    """The class-conditional mixture G(z | c) = sum_k w_kc N(z; mu_hat_kc, Sigma_pool).

    Server-side only: it holds every client's class means.

    Attributes:
        component_means: (K, C, d) float64, mu_hat_kc (0 where n_kc = 0).
        weights: (K, C) float64, w_kc; each column sums to 1 over the clients holding
            class c, and is all 0 for a class no client holds.
        prior: the moment-matched GlobalPrior (its `cov` is Sigma_pool).
    """

    component_means: Tensor
    weights: Tensor
    prior: GlobalPrior

    @property
    def cov(self) -> Tensor:
        """(d, d) Sigma_pool, the covariance shared by every component."""
        return self.prior.cov


def resampling_weights(counts: Tensor, tau: float) -> Tensor:
    """w_kc = n_kc^tau / sum_{k': n_k'c > 0} n_k'c^tau, zero where n_kc = 0.

    Args:
        counts: (K, C) per-client class counts.
        tau: >= 0. tau = 1 is proportional to data, tau = 0 gives every holder of the
            class the same weight, 0 < tau < 1 flattens the dominance of large clients.

    Returns:
        (K, C) float64; columns of classes nobody holds are all 0.
    """
    if tau < 0:
        raise ValueError(f"resampling tau must be >= 0, got {tau}")
    counts = counts.to(STATS_DTYPE)
    held = counts > 0
    raw = torch.where(held, counts.clamp_min(1e-300).pow(tau), torch.zeros_like(counts))
    total = raw.sum(0, keepdim=True)
    return torch.where(total > 0, raw / total.clamp_min(1e-300), torch.zeros_like(raw))


def fit_generator(uploads: list[ClassStats], tau: float = 1.0, eps: float = 1e-3) -> GaussianGenerator:
    """Fit the generator (and its moment-matched prior) to one round's client uploads.

    Args:
        uploads: K >= 1 ClassStats, one per participating client, same C and d.
        tau: re-sampling exponent (flag `gm.resample_tau`, default 1).
        eps: shrinkage of Sigma_pool (see `shrink`).

    Returns:
        GaussianGenerator whose `prior` has mean mu_g, covariance Sigma_pool, spread P.
    """
    counts_k, means_k = stack_class_stats(uploads, "fit_generator")  # (K, C), (K, C, d)
    weights = resampling_weights(counts_k, tau)
    mu_g = torch.einsum("kc,kcd->cd", weights, means_k)
    dev = means_k - mu_g[None]
    spread = symmetrize(torch.einsum("kc,kci,kcj->cij", weights, dev, dev))

    dof = float(sum(max(u.total - u.num_present, 0.0) for u in uploads))
    pooled_scatter = torch.stack([u.scatter for u in uploads]).sum(0)
    cov = shrink(pooled_scatter / max(dof, 1.0), eps)

    class_counts = counts_k.sum(0)
    n_total = class_counts.sum()
    class_prior = class_counts / n_total if n_total > 0 else torch.zeros_like(class_counts)
    prior = GlobalPrior(
        means=mu_g,
        cov=cov,
        spread=spread,
        class_prior=class_prior,
        num_clients=(counts_k > 0).sum(0).to(STATS_DTYPE),
        class_counts=class_counts,
        dof=torch.tensor(dof, dtype=STATS_DTYPE, device=mu_g.device),
    )
    return GaussianGenerator(component_means=means_k, weights=weights, prior=prior)


def sample(
    source: GaussianGenerator | GlobalPrior,
    per_class: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Draw the virtual-feature bank: `per_class` samples of every available class.

    From a GaussianGenerator (spec §2): for each sample pick client k with probability
    w_kc, then draw z ~ N(mu_hat_kc, Sigma_pool). From a GlobalPrior (our addition, for a
    client-side bank): z ~ N(mu_g,c, cov + P_c), the moment-matched Gaussian.
    Classes no client holds produce no samples.

    Args:
        source: the server's generator, or a prior.
        per_class: B >= 0 samples per available class.
        generator: the torch.Generator that supplies all randomness (on source's device).

    Returns:
        z: (C_avail * B, d) float32, grouped by class in increasing class order.
        y: (C_avail * B,) int64 class labels.
    """
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    prior = source.prior if isinstance(source, GaussianGenerator) else source
    device = prior.means.device
    classes = torch.nonzero(prior.available, as_tuple=False).flatten()
    n_avail, d = int(classes.numel()), prior.dim
    if n_avail == 0 or per_class == 0:
        return torch.zeros(0, d, dtype=torch.float32, device=device), torch.zeros(0, dtype=torch.int64, device=device)
    noise = torch.randn(n_avail, per_class, d, generator=generator, dtype=STATS_DTYPE, device=device)
    if isinstance(source, GaussianGenerator):
        probs = source.weights[:, classes].T  # (C_avail, K)
        comp = torch.multinomial(probs, per_class, replacement=True, generator=generator)  # (C_avail, B)
        centres = source.component_means[comp, classes[:, None]]  # (C_avail, B, d)
        lower = safe_cholesky(source.cov)
        z = centres + noise @ lower.T
    else:
        total_cov = prior.cov[None] + prior.spread[classes]  # (C_avail, d, d)
        lower = safe_cholesky(total_cov)
        z = prior.means[classes][:, None, :] + noise @ lower.transpose(-1, -2)
    y = classes[:, None].expand(n_avail, per_class).reshape(-1)
    return z.reshape(-1, d).to(torch.float32), y.to(torch.int64)
