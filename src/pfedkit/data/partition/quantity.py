"""Quantity skew: log-normal client sizes, IID labels."""

from __future__ import annotations

import numpy as np

from pfedkit.core.errors import PartitionError
from pfedkit.data.partition._assign import check_min_size, check_num_clients, indices_by_owner, scatter_owner
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
