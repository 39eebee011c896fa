"""Build the federated dataset a config describes: load pool → subsample → partition → split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pfedkit.core.config import DataConfig, PartitionConfig, default_data_root
from pfedkit.core.errors import ConfigError
from pfedkit.core.seeding import numpy_generator
from pfedkit.data.client_data import ClientData
from pfedkit.data.domains.corruption_domains import apply_domain_config, check_domain_config, require_no_domains
from pfedkit.data.federated import build_client, build_clients, subsample_pool
from pfedkit.data.partition import Partition, build_partition
from pfedkit.data.pool import Pool
from pfedkit.data.registry import load_source
from pfedkit.data.split_check import check_client_splits


@dataclass
class FederatedData:
    """A pool, its partition and the per-client splits built from them."""

    pool: Pool
    partition: Partition
    clients: list[ClientData]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.pool.input_shape

    @property
    def num_classes(self) -> int:
        return self.pool.num_classes


def load_pool(data: DataConfig, seed: int) -> Pool:
    """The configured source, subsampled to ``data.max_samples`` if set, with its domains.

    Order: check the ``data.domain*`` keys (errors before any loading) → load the source →
    subsample → with ``data.domains=corruptions``, give every kept image a corruption domain
    and apply it (after subsampling, so only the kept images are corrupted; the result is
    deterministic from ``seed``; see `pfedkit.data.domains.corruption_domains`).
    """
    check_domain_config(data)
    pool = load_source(data.dataset, Path(data.root or default_data_root()).expanduser())
    if data.domains == "corruptions":
        require_no_domains(pool)  # before subsampling: the check is about the source
    pool = subsample_pool(pool, data.max_samples, seed)
    return apply_domain_config(pool, data, seed)


def partition_pool(pool: Pool, data: DataConfig, part: PartitionConfig, seed: int) -> Partition:
    """Partition the pool as ``partition.*`` says, seeded by ``seed``."""
    return build_partition(
        part.scheme, pool.y.numpy(), data.num_clients, numpy_generator(seed, 1),
        domains=None if pool.domain is None else pool.domain.numpy(),
        alpha=part.alpha, classes_per_client=part.classes_per_client,
        shards_per_client=part.shards_per_client, min_size=part.min_size,
        quantity_sigma=part.quantity_sigma, alpha_domain=part.alpha_domain,
        corruption=part.corruption, severity=part.severity, num_heldout=part.num_heldout,
    )


def build_client_data(data: DataConfig, part: PartitionConfig, seed: int, k: int, pool: Pool | None = None
                      ) -> ClientData:
    """Client ``k``'s data as `build_federated_data` would build it, without building the others."""
    pool = pool if pool is not None else load_pool(data, seed)
    if not 0 <= k < data.num_clients:
        raise ConfigError(f"client {k} does not exist; data.num_clients={data.num_clients}")
    partition = partition_pool(pool, data, part, seed)
    client = build_client(pool, partition, k, data.val_fraction, data.test_fraction, seed)
    check_client_splits([client], data, part)
    return client


def build_federated_data(data: DataConfig, part: PartitionConfig, seed: int, pool: Pool | None = None) -> FederatedData:
    """Everything from config to per-client tensors; pass ``pool`` to reuse a loaded one."""
    pool = pool if pool is not None else load_pool(data, seed)
    partition = partition_pool(pool, data, part, seed)
    clients = build_clients(pool, partition, data.val_fraction, data.test_fraction, seed)
    check_client_splits(clients, data, part)
    return FederatedData(pool, partition, clients)
