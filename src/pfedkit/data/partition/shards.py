"""Shards partitioner: sort by label, cut into equal shards, deal ``s`` shards to each client."""

from __future__ import annotations

import numpy as np

from pfedkit.core.errors import PartitionError
from pfedkit.data.partition._assign import (
    check_num_clients,
    compact_codes,
    even_counts,
    indices_by_owner,
    scatter_owner,
    shuffled_group_order,
)
from pfedkit.data.partition.base import Partition


def shards(
    labels: np.ndarray, num_clients: int, shards_per_client: int, rng: np.random.Generator
) -> Partition:
    """McMahan et al.'s shards: label-sorted data cut into K x s near-equal shards, s per client.

    Samples are sorted by label (random order inside a class), cut into ``num_clients *
    shards_per_client`` contiguous shards, and the shards are dealt at random. A client
    therefore sees at most ``s`` classes (fewer when two shards share a class).

    Args:
        labels: (N,) int class labels.
        num_clients: K.
        shards_per_client: s >= 1, with K x s <= N.
        rng: source of all randomness.

    Returns:
        K disjoint sorted index arrays covering all N samples.
    """
    n = len(labels)
    check_num_clients(n, num_clients)
    num_shards = num_clients * shards_per_client
    if shards_per_client < 1 or num_shards > n:
        raise PartitionError(
            f"partition.shards_per_client={shards_per_client} x {num_clients} clients asks for "
            f"{num_shards} shards of {n} samples; it must be >= 1 and K x s <= N: lower "
            f"partition.shards_per_client or data.num_clients"
        )
    _, codes = compact_codes(labels)
    shard_owner = rng.permutation(num_shards) // shards_per_client
    owner_sorted = np.repeat(shard_owner, even_counts(n, num_shards))
    order = shuffled_group_order(codes, rng)
    return Partition(indices_by_owner(scatter_owner(order, owner_sorted), num_clients))
