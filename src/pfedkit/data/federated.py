"""Turn a pool and a partition into per-client ClientData (the federated dataset)."""

from __future__ import annotations

import numpy as np
import torch

from pfedkit.core.seeding import derive_seed, numpy_generator
from pfedkit.data.client_data import ClientData, stratified_split
from pfedkit.data.partition import Partition
from pfedkit.data.pool import Pool


def build_clients(
    pool: Pool, partition: Partition, val_fraction: float, test_fraction: float, seed: int
) -> list[ClientData]:
    """Every client's `build_client`, in client order."""
    return [build_client(pool, partition, k, val_fraction, test_fraction, seed)
            for k in range(partition.num_clients)]


def build_client(
    pool: Pool, partition: Partition, k: int, val_fraction: float, test_fraction: float, seed: int
) -> ClientData:
    """Client ``k``'s data alone: its indices cut into a stratified, seeded train/val/test split.

    Depends only on (pool, partition, k, fractions, seed), so a process that hosts one client
    (a Flower node) builds exactly what the simulator builds for it and nothing of the others.
    A client whose partition metadata names a corruption gets that (type, severity) applied to
    all of its images (train, val and test alike), deterministically from the seed.
    """
    idx = partition.client_indices[k]
    meta = dict(partition.client_meta[k]) if partition.client_meta else {}
    x = pool.x[torch.as_tensor(idx)]
    corruption = meta.get("corruption", "none")
    if corruption not in (None, "none") and int(meta.get("severity", 0)) > 0:
        from pfedkit.data.corruptions import corrupt

        gen = torch.Generator().manual_seed(derive_seed(seed, 7, k))
        x = corrupt(x, corruption, int(meta["severity"]), gen)
    tr, va, te = stratified_split(pool.y.numpy()[idx], val_fraction, test_fraction, numpy_generator(seed, 3, k))
    y = pool.y[torch.as_tensor(idx)]
    dom = pool.domain[torch.as_tensor(idx)] if pool.domain is not None else None
    pick = lambda t, pos: None if t is None else t[torch.as_tensor(pos, dtype=torch.long)]  # noqa: E731
    return ClientData(
        client_id=k,
        x_train=pick(x, tr), y_train=pick(y, tr),
        x_val=pick(x, va), y_val=pick(y, va),
        x_test=pick(x, te), y_test=pick(y, te),
        num_classes=pool.num_classes, meta=meta,
        domain_train=pick(dom, tr), domain_val=pick(dom, va), domain_test=pick(dom, te),
    )


def subsample_pool(pool: Pool, max_samples: int, seed: int) -> Pool:
    """A seeded random subset of ``max_samples`` pool images (the pool itself if 0 or larger)."""
    if max_samples <= 0 or max_samples >= len(pool):
        return pool
    keep = torch.as_tensor(np.sort(numpy_generator(seed, 11).choice(len(pool), max_samples, replace=False)))
    dom = pool.domain[keep] if pool.domain is not None else None
    return Pool(pool.x[keep], pool.y[keep], pool.num_classes, pool.name, dom, pool.domain_names)
