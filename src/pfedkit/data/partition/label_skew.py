"""Label-distribution partitioners: IID, Dirichlet label skew, pathological k classes."""

from __future__ import annotations

import numpy as np

from pfedkit.core.errors import PartitionError
from pfedkit.data.partition._assign import (
    check_min_size,
    check_num_clients,
    compact_codes,
    counts_meeting_min_size,
    even_counts,
    indices_by_owner,
    owners_in_order,
    partition_by_counts,
    scatter_owner,
    shuffled_group_order,
)
from pfedkit.data.partition.base import Partition


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> Partition:
    """Shuffle all indices and deal them into ``num_clients`` near-equal parts.

    Args:
        labels: (N,) int labels (only the length is used).
        num_clients: K, 1 <= K <= N.
        rng: source of the shuffle.

    Returns:
        K disjoint sorted index arrays covering all N samples; sizes differ by at most one.
    """
    n = len(labels)
    check_num_clients(n, num_clients)
    owner = np.repeat(np.arange(num_clients), even_counts(n, num_clients))
    return Partition(indices_by_owner(scatter_owner(rng.permutation(n), owner), num_clients))


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 10,
    max_tries: int = 100,
) -> Partition:
    """Dirichlet label skew: class c's samples are split among clients by proportions ~ Dir(alpha 1_K).

    Small alpha gives clients with few classes, large alpha nearly uniform clients. Only the
    (classes x clients) count table is redrawn until every client holds at least ``min_size``
    samples, at most ``max_tries`` times, so a failing constraint costs milliseconds.

    Args:
        labels: (N,) int class labels.
        num_clients: K.
        alpha: Dirichlet concentration, > 0.
        rng: source of all randomness.
        min_size: minimum samples per client.
        max_tries: redraws before giving up with PartitionError.

    Returns:
        K disjoint sorted index arrays covering all N samples.
    """
    n = len(labels)
    check_num_clients(n, num_clients)
    if not alpha > 0:
        raise PartitionError(f"partition.alpha must be > 0, got {alpha}")
    check_min_size(n, num_clients, min_size)
    _, codes = compact_codes(labels)
    totals = np.bincount(codes)
    counts = counts_meeting_min_size(lambda: rng.dirichlet(np.full(num_clients, float(alpha)), size=len(totals)),
                                     totals, min_size, max_tries)
    if counts is None:
        raise PartitionError(
            f"Dirichlet partition with partition.alpha={alpha}: no draw in {max_tries} tries gave "
            f"every one of {num_clients} clients at least partition.min_size={min_size} samples; "
            f"raise partition.alpha, lower partition.min_size or use fewer data.num_clients"
        )
    return Partition(partition_by_counts(codes, counts, rng))


def pathological(
    labels: np.ndarray, num_clients: int, classes_per_client: int, rng: np.random.Generator
) -> Partition:
    """Each client holds exactly ``classes_per_client`` distinct classes.

    Clients pick their classes one after another among the least-used classes (ties broken at
    random), so every class is held by the same number of clients up to one and class
    combinations vary; each class's samples are split evenly among its holders. Classes that
    no client picks (only when K x k < number of classes) are left out.

    Args:
        labels: (N,) int class labels.
        num_clients: K.
        classes_per_client: k, 1 <= k <= number of classes.
        rng: source of all randomness.

    Returns:
        K disjoint sorted index arrays.
    """
    n = len(labels)
    check_num_clients(n, num_clients)
    uniques, codes = compact_codes(labels)
    num_classes = len(uniques)
    if not 1 <= classes_per_client <= num_classes:
        raise PartitionError(
            f"partition.classes_per_client={classes_per_client} must lie in [1, {num_classes}] "
            f"(the dataset has {num_classes} classes): change partition.classes_per_client"
        )
    holds = np.zeros((num_classes, num_clients), dtype=bool)
    usage = np.zeros(num_classes)
    for k in range(num_clients):
        pick = np.argsort(usage + rng.random(num_classes))[:classes_per_client]
        holds[pick, k] = True
        usage[pick] += 1
    totals = np.bincount(codes, minlength=num_classes)
    holders = holds.sum(axis=1)
    short = np.flatnonzero((holders > totals))
    if len(short):
        c = short[0]
        raise PartitionError(
            f"class {uniques[c]} has {totals[c]} samples but {holders[c]} clients must hold it: lower "
            f"partition.classes_per_client or data.num_clients"
        )
    width = int(holders.max())
    slots = np.full((num_classes, width + 1), -1, dtype=np.int64)  # last slot: nobody
    counts = np.zeros_like(slots)
    for c in range(num_classes):
        who = np.flatnonzero(holds[c])
        slots[c, : len(who)] = who
        if len(who):
            counts[c, : len(who)] = even_counts(int(totals[c]), len(who))
        else:
            counts[c, -1] = totals[c]
    order = shuffled_group_order(codes, rng)
    return Partition(indices_by_owner(scatter_owner(order, owners_in_order(slots, counts)), num_clients))
