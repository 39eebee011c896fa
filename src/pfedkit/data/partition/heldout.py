"""Held-out new clients: the last clients of a partition never train, they are only evaluated."""

from __future__ import annotations

from pfedkit.core.errors import PartitionError
from pfedkit.data.partition.base import Partition


def mark_heldout(partition: Partition, num_heldout: int) -> Partition:
    """Return a copy where the last ``num_heldout`` clients have ``client_meta[k]["heldout"] = True``.

    Every other client gets ``heldout = False``. The simulator skips held-out clients in training
    rounds and reports them separately (generalisation to clients unseen in training).
    ``num_heldout = 0`` returns the partition unchanged.

    Raises:
        PartitionError: ``num_heldout`` is negative or leaves no client to train.
    """
    k = partition.num_clients
    if not 0 <= num_heldout < k:
        raise PartitionError(
            f"partition.num_heldout={num_heldout} must lie in [0, {k - 1}] for {k} clients (at "
            f"least one client must train): lower partition.num_heldout or raise data.num_clients"
        )
    if num_heldout == 0:
        return partition
    meta = [dict(m) for m in partition.client_meta] or [{} for _ in range(k)]
    for i, m in enumerate(meta):
        m["heldout"] = i >= k - num_heldout
    return Partition(partition.client_indices, meta)
