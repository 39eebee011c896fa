"""Global-level Kalman fusion across rounds (pFedGM spec §4).

Paper's words (abstract): "Inspired by the Kalman gain, the algorithm then employs a
dual-scale fusion framework at global and local levels". The filter below is our reading.

State per class c: the global mean mu_g,c and its uncertainty U_c (d x d); shared: the
within-class covariance Sigma_g with a scalar relative uncertainty u_sigma.

    predict:  U_c <- U_c + q_c I                  (the feature extractor moved)
              u_sigma <- u_sigma + q_sigma
    update with one round's GlobalPrior (pooled mean mu_bar_c, Sigma_pool, P_c, m_c):
              V_c  = (Sigma_pool + P_c) / m_c
              G_c  = U_c (U_c + V_c)^-1
              mu_g,c <- mu_g,c + G_c (mu_bar_c - mu_g,c)
              U_c  <- (I - G_c) U_c (I - G_c)^T + G_c V_c G_c^T     (Joseph form, = (I-G)U)

Our choices where the spec is silent:
  * A class no participant holds this round (m_c = 0) is left untouched by `update`, so
    across a predict+update its uncertainty grows by exactly q_c I and its mean stays.
  * The first observation of a class initialises it: mu_g,c = mu_bar_c, U_c = V_c.
  * Sigma_g is filtered with a scalar gain in *relative* units, which makes the noise
    unit-free: a covariance estimated from `dof` degrees of freedom has relative variance
    about 1/dof (Wishart), so  g = u_sigma / (u_sigma + 1/dof),
    Sigma_g <- Sigma_g + g (Sigma_pool - Sigma_g),  u_sigma <- (1 - g) u_sigma.
  * P_c is not filtered: the state keeps the latest P_c observed from >= 2 clients (a
    single client's spread is 0 by construction and says nothing about heterogeneity);
    a newly initialised class takes whatever P_c it arrives with.
  * The class prior pi_g is the normalised sum of class counts over all observations
    (with uniform client sampling this estimates the population label distribution).
  * `filter_pool` is the "no global filter" ablation: take the round's observation for every
    class it contains and keep the last value of the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from pfedkit.stats._linalg import ClassMeansShape, eye_like, psd_solve, symmetrize
from pfedkit.stats.generator import GlobalPrior
from pfedkit.stats.sufficient import STATS_DTYPE


@dataclass(frozen=True)
class GlobalFilterState(ClassMeansShape):
    """State of the global filter.

    Attributes:
        means: (C, d) float64, mu_g.
        mean_uncertainty: (C, d, d) float64, U (0 for uninitialised classes).
        cov: (d, d) float64, Sigma_g (0 until the first observation).
        cov_uncertainty: () float64, u_sigma, relative; +inf until the first observation.
        initialized: (C,) bool, classes observed at least once.
        spread: (C, d, d) float64, latest informative P_c (carried, not filtered).
        class_counts: (C,) float64, class counts summed over every observation.
        num_clients: (C,) float64, m_c of the latest round that held the class.
    """

    means: Tensor
    mean_uncertainty: Tensor
    cov: Tensor
    cov_uncertainty: Tensor
    initialized: Tensor
    spread: Tensor
    class_counts: Tensor
    num_clients: Tensor

    @classmethod
    def empty(cls, num_classes: int, dim: int, device: torch.device | str | None = None) -> GlobalFilterState:
        """A filter that has observed nothing."""
        z = dict(dtype=STATS_DTYPE, device=device)
        return cls(
            means=torch.zeros(num_classes, dim, **z),
            mean_uncertainty=torch.zeros(num_classes, dim, dim, **z),
            cov=torch.zeros(dim, dim, **z),
            cov_uncertainty=torch.tensor(math.inf, **z),
            initialized=torch.zeros(num_classes, dtype=torch.bool, device=device),
            spread=torch.zeros(num_classes, dim, dim, **z),
            class_counts=torch.zeros(num_classes, **z),
            num_clients=torch.zeros(num_classes, **z),
        )

    def to_prior(self) -> GlobalPrior:
        """The filtered prior (mu_g, Sigma_g, P, pi_g) that the server broadcasts.

        `num_clients` is 0 for classes never observed (so they count as unavailable),
        `dof` is the effective degrees of freedom 1 / u_sigma (0 before any observation).
        """
        total = self.class_counts.sum()
        class_prior = self.class_counts / total if total > 0 else torch.zeros_like(self.class_counts)
        u = self.cov_uncertainty
        dof = torch.where(torch.isfinite(u) & (u > 0), 1.0 / u.clamp_min(1e-300), torch.zeros_like(u))
        return GlobalPrior(
            means=self.means,
            cov=self.cov,
            spread=self.spread,
            class_prior=class_prior,
            num_clients=torch.where(self.initialized, self.num_clients, torch.zeros_like(self.num_clients)),
            class_counts=self.class_counts,
            dof=dof,
        )

    def to_payload(self, prefix: str = "") -> dict[str, Tensor]:
        """Named tensors of every field (for checkpoints)."""
        return {f"{prefix}{k}": getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_payload(cls, payload: dict[str, Tensor], prefix: str = "") -> GlobalFilterState:
        """Inverse of `to_payload`."""
        return cls(**{k: payload[f"{prefix}{k}"] for k in cls.__dataclass_fields__})


def _as_class_vector(q: float | Tensor, num_classes: int, like: Tensor) -> Tensor:
    q = torch.as_tensor(q, dtype=STATS_DTYPE, device=like.device)
    if q.ndim == 0:
        q = q.expand(num_classes)
    if q.shape != (num_classes,):
        raise ValueError(f"process noise must be a scalar or shape ({num_classes},), got {tuple(q.shape)}")
    if (q < 0).any():
        raise ValueError("process noise must be >= 0")
    return q


def filter_predict(state: GlobalFilterState, q: float | Tensor, q_cov: float = 0.0) -> GlobalFilterState:
    """Prediction step: U_c <- U_c + q_c I on initialised classes; u_sigma <- u_sigma + q_cov.

    Args:
        state: current filter state.
        q: process noise of the means, scalar or (C,) (feature units squared); see
            `anchor_shift_noise` for an estimate from the navigator anchors.
        q_cov: relative process noise of Sigma_g (>= 0, unit-free).
    """
    if q_cov < 0:
        raise ValueError(f"q_cov must be >= 0, got {q_cov}")
    qv = _as_class_vector(q, state.num_classes, state.means)
    qv = torch.where(state.initialized, qv, torch.zeros_like(qv))
    eye = eye_like(state.mean_uncertainty)
    return replace(
        state,
        mean_uncertainty=state.mean_uncertainty + qv[:, None, None] * eye,
        cov_uncertainty=state.cov_uncertainty + q_cov,
    )


def observation_noise(observation: GlobalPrior) -> Tensor:
    """V_c = (Sigma_pool + P_c) / m_c, (C, d, d); rows with m_c = 0 are 0 (unused)."""
    m = observation.num_clients
    v = (observation.cov[None] + observation.spread) / m.clamp_min(1.0)[:, None, None]
    return torch.where((m > 0)[:, None, None], symmetrize(v), torch.zeros_like(v))


def _carry_spread_and_counts(state: GlobalFilterState, obs: GlobalPrior, newly: Tensor) -> dict[str, Tensor]:
    seen = obs.available
    informative = (obs.num_clients >= 2) | newly
    return dict(
        spread=torch.where(informative[:, None, None], obs.spread, state.spread),
        class_counts=state.class_counts + obs.class_counts,
        num_clients=torch.where(seen, obs.num_clients, state.num_clients),
    )


def _cov_noise(obs: GlobalPrior) -> float | None:
    dof = float(obs.dof)
    return None if dof <= 0 else 1.0 / dof


def filter_update(state: GlobalFilterState, observation: GlobalPrior) -> GlobalFilterState:
    """Measurement update with one round's moment-matched GlobalPrior (see module doc).

    Classes with m_c = 0 in the observation keep their mean and uncertainty; a class
    observed for the first time is initialised from the observation.
    """
    obs = observation
    if (obs.num_classes, obs.dim) != (state.num_classes, state.dim):
        raise ValueError("filter_update: observation and state differ in C or d")
    seen = obs.available
    newly = seen & ~state.initialized
    fuse = seen & state.initialized
    v = observation_noise(obs)

    means = torch.where(newly[:, None], obs.means, state.means)
    unc = torch.where(newly[:, None, None], v, state.mean_uncertainty)
    idx = torch.nonzero(fuse, as_tuple=False).flatten()
    if idx.numel():
        u_c, v_c = state.mean_uncertainty[idx], v[idx]
        # G = U (U + V)^-1  <=>  G^T = (U + V)^-1 U  (U, V symmetric).
        gain = psd_solve(u_c + v_c, u_c).transpose(-1, -2)
        innovation = obs.means[idx] - state.means[idx]
        means[idx] = state.means[idx] + (gain @ innovation[..., None]).squeeze(-1)
        i_minus_g = eye_like(u_c) - gain
        unc[idx] = symmetrize(i_minus_g @ u_c @ i_minus_g.transpose(-1, -2) + gain @ v_c @ gain.transpose(-1, -2))

    cov, cov_unc = state.cov, state.cov_uncertainty
    noise = _cov_noise(obs)
    if noise is not None:
        if not torch.isfinite(cov_unc):
            cov, cov_unc = obs.cov, torch.tensor(noise, dtype=STATS_DTYPE, device=cov.device)
        else:
            g = cov_unc / (cov_unc + noise)
            cov = symmetrize(cov + g * (obs.cov - cov))
            cov_unc = (1.0 - g) * cov_unc
    return GlobalFilterState(
        means=means,
        mean_uncertainty=unc,
        cov=cov,
        cov_uncertainty=cov_unc,
        initialized=state.initialized | seen,
        **_carry_spread_and_counts(state, obs, newly),
    )


def filter_pool(state: GlobalFilterState, observation: GlobalPrior) -> GlobalFilterState:
    """The "no global filter" ablation: plain pooling, the observation replaces the state.

    Classes the observation holds take its mean (and U_c = V_c for bookkeeping); the
    others keep their last value. Sigma_g becomes the observation's Sigma_pool.
    """
    obs = observation
    if (obs.num_classes, obs.dim) != (state.num_classes, state.dim):
        raise ValueError("filter_pool: observation and state differ in C or d")
    seen = obs.available
    newly = seen & ~state.initialized
    v = observation_noise(obs)
    noise = _cov_noise(obs)
    cov, cov_unc = state.cov, state.cov_uncertainty
    if noise is not None:
        cov, cov_unc = obs.cov, torch.tensor(noise, dtype=STATS_DTYPE, device=cov.device)
    return GlobalFilterState(
        means=torch.where(seen[:, None], obs.means, state.means),
        mean_uncertainty=torch.where(seen[:, None, None], v, state.mean_uncertainty),
        cov=cov,
        cov_uncertainty=cov_unc,
        initialized=state.initialized | seen,
        **_carry_spread_and_counts(state, obs, newly),
    )


def anchor_shift_noise(old_anchors: Tensor, new_anchors: Tensor) -> Tensor:
    """Process noise per class from the navigator anchors' shift: q_c = ||m_c' - m_c||^2 / d.

    Our reading of the spec's "Q estimated from the shift of the navigator anchors": the
    shift of class c's anchor over a round stands in for the shift of its feature mean,
    spread isotropically over d dimensions. old/new: (C, d) -> (C,) float64.
    """
    if old_anchors.shape != new_anchors.shape or old_anchors.ndim != 2:
        raise ValueError("anchor_shift_noise: expected two (C, d) tensors of equal shape")
    delta = (new_anchors.detach().to(STATS_DTYPE) - old_anchors.detach().to(STATS_DTYPE))
    return delta.pow(2).sum(1) / delta.shape[1]
