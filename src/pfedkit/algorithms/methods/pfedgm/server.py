"""pFedGM's server side (paper R2, R6; spec §2, §4): the virtual-feature bank drawn from the
Gaussian generator, the global Kalman fusion over rounds, and our adaptive noise model (the
innovation's excess, the global mean's own uncertainty in the broadcast spread)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from pfedkit.stats import (
    STATS_DTYPE,
    GaussianGenerator,
    GlobalFilterState,
    GlobalPrior,
    filter_pool,
    filter_predict,
    filter_update,
    observation_noise,
    sample,
)


def virtual_feature_bank(generator: GaussianGenerator | None, prior: GlobalPrior, per_class: int,
                         rng: torch.Generator) -> tuple[Tensor, Tensor]:
    """B virtual features per class: from the generator G for the classes it holds (spec §2),
    and from the filtered prior N(mu_g,c, Sigma_g + P_c) for classes only the filter knows
    (our addition: with partial participation the bank still carries every known class).

    Returns:
        z (N, d) float32 and y (N,) int64 on the CPU.
    """
    parts_z, parts_y = [], []
    covered = torch.zeros(prior.num_classes, dtype=torch.bool)
    if generator is not None:
        z, y = sample(generator, per_class, rng)
        parts_z.append(z)
        parts_y.append(y)
        covered = generator.prior.available.cpu()
    rest = prior.available.cpu() & ~covered
    if bool(rest.any()):
        only = replace(prior, num_clients=torch.where(rest, prior.num_clients, torch.zeros_like(prior.num_clients)))
        z, y = sample(only, per_class, rng)
        parts_z.append(z)
        parts_y.append(y)
    if not parts_z:
        return torch.zeros(0, prior.dim), torch.zeros(0, dtype=torch.int64)
    return torch.cat(parts_z).cpu(), torch.cat(parts_y).cpu()


def global_fusion(state: GlobalFilterState, observation: GlobalPrior, q: float | Tensor, q_cov: float,
                  use_filter: bool = True) -> GlobalFilterState:
    """Global-level fusion (R6, spec §4): Kalman predict (U_c += q_c I) then update with this
    round's moment-matched observation; ``use_filter = False`` is plain pooling (ablation).

    Args:
        state: the filter state (C classes, d dims).
        observation: this round's `GlobalPrior` from `fit_generator`.
        q: process noise, scalar or (C,), feature units squared.
        q_cov: relative process noise of Sigma_g.
    """
    if not use_filter:
        return filter_pool(state, observation)
    return filter_update(filter_predict(state, q, q_cov), observation)


def innovation_noise(state: GlobalFilterState, observation: GlobalPrior) -> Tensor:
    """Adaptive process noise (our addition): how far this round's pooled means moved beyond
    what the filter expected, q_c = max(||mu_bar_c - mu_g,c||^2 - tr(U_c + V_c), 0) / d for the
    classes observed now and before; the other classes get the mean over those (the feature
    extractor moved for them too). (C,) float64, 0 when nothing can be compared."""
    both = observation.available & state.initialized
    q = torch.zeros(state.num_classes, dtype=STATS_DTYPE)
    if not bool(both.any()):
        return q
    v = observation_noise(observation)
    err = (observation.means - state.means).pow(2).sum(1)
    expected = (state.mean_uncertainty + v).diagonal(dim1=-2, dim2=-1).sum(-1)
    excess = ((err - expected).clamp_min(0.0) / state.dim).cpu()
    q[both] = excess[both]
    q[~both] = excess[both].mean()
    return q


def with_mean_uncertainty(prior: GlobalPrior, state: GlobalFilterState, q: Tensor) -> GlobalPrior:
    """The prior whose spread is P_c + U_c + q_c I: the spread of a client's class mean around
    the *estimated* global mean, whose own uncertainty U_c (plus one round of process noise,
    the extractor moves again before the client uses it) adds to the between-client spread."""
    eye = torch.eye(prior.dim, dtype=STATS_DTYPE)
    extra = state.mean_uncertainty + q.to(STATS_DTYPE)[:, None, None] * eye
    extra = torch.where(state.initialized[:, None, None], extra, torch.zeros_like(extra))
    return replace(prior, spread=prior.spread + extra)
