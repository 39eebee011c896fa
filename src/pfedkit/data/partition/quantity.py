"""Quantity skew: log-normal client sizes, with IID labels or with Dirichlet label skew on top."""

from __future__ import annotations

import numpy as np

from pfedkit.core.errors import PartitionError
from pfedkit.data.partition._assign import (
    check_min_size,
    check_num_clients,
    compact_codes,
    counts_meeting_min_size,
    indices_by_owner,
    partition_by_counts,
    scatter_owner,
)
from pfedkit.data.partition.base import Partition


def quantity_skew(
    labels: np.ndarray,
    num_clients: int,
    sigma: float,
    rng: np.random.Generator,
    min_size: int = 10,
) -> Partition:
    """Client sizes proportional to LogNormal(0, sigma) weights on top of ``min_size`` each.

    Every client first gets ``min_size`` samples; the remaining N - K x min_size are shared in
    proportion to log-normal weights (sigma = 0: equal sizes; sigma = 1: the largest client is
    typically tens of times the smallest). Labels are IID. The minimum is met by construction,
    so the only failure is K x min_size > N, reported at once.

    Args:
        labels: (N,) int labels (only the length is used).
        num_clients: K.
        sigma: log-normal shape, >= 0.
        rng: source of all randomness.
        min_size: minimum samples per client.

    Returns:
        K disjoint sorted index arrays covering all N samples.
    """
    n = len(labels)
    check_num_clients(n, num_clients)
    if not sigma >= 0:
        raise PartitionError(f"partition.quantity_sigma must be >= 0, got {sigma}")
    check_min_size(n, num_clients, min_size)
    weights = rng.lognormal(0.0, float(sigma), size=num_clients)
    share = weights / weights.sum() * (n - min_size * num_clients)
    sizes = min_size + np.floor(share).astype(np.int64)
    leftover = n - int(sizes.sum())
    sizes[np.argsort(np.floor(share) - share, kind="stable")[:leftover]] += 1
    owner = np.repeat(np.arange(num_clients), sizes)
    return Partition(indices_by_owner(scatter_owner(rng.permutation(n), owner), num_clients))


def quantity_dirichlet(
    labels: np.ndarray,
    num_clients: int,
    sigma: float,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 10,
    max_tries: int = 100,
) -> Partition:
    """Quantity skew and label skew together: log-normal client sizes and Dirichlet label mixes.

    Client k draws a size weight w_k ~ LogNormal(0, sigma) and a label preference
    d_k ~ Dir(alpha 1_C); class c's samples are split among clients in proportion to
    w_k d_kc. A client's expected share of the pool is then roughly proportional to w_k
    (sigma = 0: near-equal sizes) while its classes are as skewed as a Dirichlet(alpha) split
    (alpha large: near-IID labels). The (classes x clients) count table is redrawn until every
    client holds ``min_size`` samples, at most ``max_tries`` times.

    Args:
        labels: (N,) int class labels.
        num_clients: K.
        sigma: log-normal shape of the size weights, >= 0.
        alpha: Dirichlet label concentration, > 0.
        rng: source of all randomness.
        min_size: minimum samples per client.
        max_tries: redraws before giving up with PartitionError.

    Returns:
        K disjoint sorted index arrays covering all N samples.
    """
    n = len(labels)
    check_num_clients(n, num_clients)
    if not sigma >= 0:
        raise PartitionError(f"partition.quantity_sigma must be >= 0, got {sigma}")
    if not alpha > 0:
        raise PartitionError(f"partition.alpha must be > 0, got {alpha}")
    check_min_size(n, num_clients, min_size)
    _, codes = compact_codes(labels)
    totals = np.bincount(codes)
    def draw() -> np.ndarray:  # (C, K) class shares: size weight w_k times label preference d_kc
        weights = rng.lognormal(0.0, float(sigma), size=num_clients)
        preference = rng.dirichlet(np.full(len(totals), float(alpha)), size=num_clients)  # (K, C)
        return (weights[:, None] * preference).T

    counts = counts_meeting_min_size(draw, totals, min_size, max_tries)
    if counts is None:
        raise PartitionError(
            f"quantity-dirichlet partition (partition.quantity_sigma={sigma}, partition.alpha={alpha}): no draw "
            f"in {max_tries} tries gave every one of {num_clients} clients at least partition.min_size={min_size} "
            f"samples; lower partition.quantity_sigma or partition.min_size, raise partition.alpha, or use fewer "
            f"data.num_clients"
        )
    return Partition(partition_by_counts(codes, counts, rng))
