"""Shared building blocks of the partitioners: class grouping, cut counts, owner -> index lists.

Every partitioner decides an *owner* client for each sample, (N,) ints with -1 meaning "held by
nobody", and turns it into per-client index arrays with :func:`indices_by_owner`; that keeps
the work vectorised (one sort of N small integers) however many clients there are.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from pfedkit.core.errors import PartitionError


def check_num_clients(num_samples: int, num_clients: int) -> None:
    """Raise PartitionError unless 1 <= num_clients <= num_samples."""
    if num_clients < 1 or num_clients > num_samples:
        raise PartitionError(
            f"data.num_clients={num_clients} must lie in [1, {num_samples}] for {num_samples} "
            f"samples: lower data.num_clients or use a larger dataset"
        )


def check_min_size(num_samples: int, num_clients: int, min_size: int) -> None:
    """Raise PartitionError when ``min_size`` samples per client exceed the dataset."""
    if min_size < 0:
        raise PartitionError(f"partition.min_size must be >= 0, got {min_size}")
    if min_size * num_clients > num_samples:
        raise PartitionError(
            f"partition.min_size={min_size} x {num_clients} clients needs {min_size * num_clients} "
            f"samples but the dataset has {num_samples}: lower partition.min_size or data.num_clients"
        )


def compact_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map arbitrary integer values to dense codes.

    Args:
        values: (N,) integer array (labels or domain ids).

    Returns:
        (uniques, codes): the sorted distinct values (U,) and (N,) int64 codes in [0, U).
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise PartitionError(f"labels/domains must be a 1-D array, got shape {values.shape}")
    if values.size and values.min() >= 0 and values.max() < 1 << 20:
        counts = np.bincount(values)
        uniques = np.flatnonzero(counts)
        lookup = np.zeros(len(counts), dtype=np.int64)
        lookup[uniques] = np.arange(len(uniques))
        return uniques, lookup[values]
    uniques, codes = np.unique(values, return_inverse=True)
    return uniques, codes.astype(np.int64)


def shuffled_group_order(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices sorted by group code, in random order inside each group.

    Args:
        codes: (N,) dense non-negative group codes.

    Returns:
        (N,) int64 permutation: all of group 0 (shuffled), then group 1, ...
    """
    perm = rng.permutation(len(codes))
    return perm[np.argsort(_small_int(codes[perm]), kind="stable")]


def cut_counts(totals: np.ndarray, proportions: np.ndarray) -> np.ndarray:
    """Split each of G totals among K parts by cutting at floor(cumulative proportion x total).

    Args:
        totals: (G,) sample counts.
        proportions: (G, K) non-negative rows (normalised here; an all-zero row splits evenly).

    Returns:
        (G, K) int64 counts whose rows sum exactly to ``totals``.
    """
    props = np.asarray(proportions, dtype=np.float64)
    sums = props.sum(axis=1, keepdims=True)
    props = np.where(sums > 0, props / np.where(sums > 0, sums, 1.0), 1.0 / props.shape[1])
    cum = np.floor(np.cumsum(props, axis=1) * totals[:, None]).astype(np.int64)
    cum[:, -1] = totals
    cum = np.maximum.accumulate(np.minimum(cum, totals[:, None]), axis=1)
    return np.diff(cum, axis=1, prepend=0)


def counts_meeting_min_size(draw_proportions: Callable[[], np.ndarray], totals: np.ndarray, min_size: int,
                            max_tries: int) -> np.ndarray | None:
    """The first of at most ``max_tries`` drawn (G, K) count tables (``cut_counts`` of ``totals``
    by ``draw_proportions()``) that gives every part at least ``min_size``; None if none does."""
    for _ in range(max(1, max_tries)):
        counts = cut_counts(totals, draw_proportions())
        if counts.sum(axis=0).min() >= min_size:
            return counts
    return None


def partition_by_counts(codes: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Per-client index arrays taking ``counts[g, k]`` random samples of group g for client k.

    Args:
        codes: (N,) dense group codes (e.g. `compact_codes` of the labels).
        counts: (G, K) samples of each group for each client; rows sum to the group sizes.
    """
    order = shuffled_group_order(codes, rng)
    slots = np.broadcast_to(np.arange(counts.shape[1]), counts.shape)
    return indices_by_owner(scatter_owner(order, owners_in_order(slots, counts)), counts.shape[1])


def even_counts(total: int, parts: int) -> np.ndarray:
    """(parts,) near-equal int64 counts summing to ``total`` (the first ``total % parts`` get one more)."""
    counts = np.full(parts, total // parts, dtype=np.int64)
    counts[: total % parts] += 1
    return counts


def owners_in_order(owner_per_group: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Owner id of each position of a group-sorted order.

    Args:
        owner_per_group: (G, K) client id of each (group, slot); -1 for nobody.
        counts: (G, K) samples that each slot takes from its group, row-major in sample order.

    Returns:
        (sum(counts),) owner per position.
    """
    return np.repeat(np.asarray(owner_per_group).ravel(), np.asarray(counts).ravel())


def indices_by_owner(owner: np.ndarray, num_clients: int) -> list[np.ndarray]:
    """Group sample indices by owner client.

    Args:
        owner: (N,) client id of every sample, -1 for samples no client holds.
        num_clients: K.

    Returns:
        K sorted int64 arrays of sample indices (views into one buffer).
    """
    owner = np.asarray(owner)
    order = np.argsort(_small_int(owner), kind="stable")
    held = owner >= 0
    skip = int(len(owner) - np.count_nonzero(held))
    counts = np.bincount(owner[held], minlength=num_clients)
    return np.split(order[skip:].astype(np.int64, copy=False), np.cumsum(counts)[:-1])


def scatter_owner(order: np.ndarray, owner_sorted: np.ndarray) -> np.ndarray:
    """(N,) owner of each sample, from the owners of the positions of ``order`` (-1 elsewhere)."""
    owner = np.full(len(order), -1, dtype=np.int64)
    owner[order[: len(owner_sorted)]] = owner_sorted
    return owner


def _small_int(a: np.ndarray) -> np.ndarray:
    """Cast to int16 when values fit (numpy then radix-sorts, several times faster)."""
    if a.size and a.min() >= -(1 << 15) and a.max() < (1 << 15):
        return a.astype(np.int16)
    return a
