"""One entry point from config values to a Partition: scheme, then corruption, then held-out clients."""

from __future__ import annotations

import numpy as np

from pfedkit.core.config import register_choices
from pfedkit.core.errors import ConfigError
from pfedkit.data.partition.base import Partition
from pfedkit.data.partition.corruption_assign import assign_corruptions
from pfedkit.data.partition.domain_skew import domain_dirichlet, one_domain_per_client
from pfedkit.data.partition.heldout import mark_heldout
from pfedkit.data.partition.label_skew import dirichlet, iid, pathological
from pfedkit.data.partition.quantity import quantity_dirichlet, quantity_skew
from pfedkit.data.partition.shards import shards

SCHEMES: tuple[str, ...] = (
    "iid",
    "dirichlet",
    "pathological",
    "shards",
    "quantity",
    "quantity-dirichlet",
    "domain",
    "domain-dirichlet",
)
"""Names accepted by ``partition.scheme``."""

register_choices("partition.scheme", lambda: SCHEMES)

_DOMAIN_SCHEMES = ("domain", "domain-dirichlet")


def build_partition(
    scheme: str,
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    domains: np.ndarray | None = None,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    shards_per_client: int = 2,
    min_size: int = 10,
    quantity_sigma: float = 1.0,
    alpha_domain: float = 1.0,
    corruption: str = "none",
    severity: int = 0,
    num_heldout: int = 0,
    max_tries: int = 100,
) -> Partition:
    """Split a pool among clients by ``scheme``, then attach corruptions and held-out flags.

    Args:
        scheme: one of :data:`SCHEMES`.
        labels: (N,) int class labels of the pool.
        num_clients: K, including held-out clients.
        rng: the only source of randomness (same seed, same partition hash).
        domains: (N,) int domain ids; required by "domain" and "domain-dirichlet".
        alpha: Dirichlet class concentration ("dirichlet", "quantity-dirichlet", "domain-dirichlet").
        classes_per_client: classes per client ("pathological").
        shards_per_client: shards per client ("shards").
        min_size: minimum samples per client (every scheme but "iid", "pathological", "shards").
        quantity_sigma: log-normal sigma of client sizes ("quantity", "quantity-dirichlet").
        alpha_domain: Dirichlet domain concentration ("domain-dirichlet").
        corruption: "none", a corruption name, or "random" (a type per client).
        severity: 1..5 for every client, or 0 for a random severity per client.
        num_heldout: the last this many clients never train (``client_meta[k]["heldout"]``).
        max_tries: redraws allowed to meet ``min_size`` before PartitionError.

    Raises:
        ConfigError: unknown scheme or corruption, or a domain scheme without domains.
        PartitionError: a constraint cannot be met; the message names the config key.
    """
    labels = np.asarray(labels)
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown partition.scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if scheme in _DOMAIN_SCHEMES and domains is None:
        raise ConfigError(
            f"partition.scheme={scheme} needs a dataset with domains (e.g. digits-md); this one has "
            f"none: pick a multi-domain data.dataset or another partition.scheme"
        )
    if scheme == "iid":
        part = iid(labels, num_clients, rng)
    elif scheme == "dirichlet":
        part = dirichlet(labels, num_clients, alpha, rng, min_size=min_size, max_tries=max_tries)
    elif scheme == "pathological":
        part = pathological(labels, num_clients, classes_per_client, rng)
    elif scheme == "shards":
        part = shards(labels, num_clients, shards_per_client, rng)
    elif scheme == "quantity":
        part = quantity_skew(labels, num_clients, quantity_sigma, rng, min_size=min_size)
    elif scheme == "quantity-dirichlet":
        part = quantity_dirichlet(labels, num_clients, quantity_sigma, alpha, rng, min_size=min_size,
                                  max_tries=max_tries)
    elif scheme == "domain":
        part = one_domain_per_client(labels, np.asarray(domains), num_clients, rng, min_size=min_size)
    else:
        part = domain_dirichlet(
            labels, np.asarray(domains), num_clients, alpha, alpha_domain, rng,
            min_size=min_size, max_tries=max_tries,
        )
    if corruption != "none":
        part = assign_corruptions(part, rng, corruption, severity)
    return mark_heldout(part, num_heldout)
