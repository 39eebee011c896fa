"""Seeded partitioners: each returns a Partition (index lists per client + content hash)."""

from pfedkit.data.partition.base import Partition
from pfedkit.data.partition.corruption_assign import assign_corruptions
from pfedkit.data.partition.domain_skew import domain_dirichlet, one_domain_per_client
from pfedkit.data.partition.heldout import mark_heldout
from pfedkit.data.partition.label_skew import dirichlet, iid, pathological
from pfedkit.data.partition.quantity import quantity_dirichlet, quantity_skew
from pfedkit.data.partition.registry import SCHEMES, build_partition
from pfedkit.data.partition.shards import shards

__all__ = [
    "SCHEMES",
    "Partition",
    "assign_corruptions",
    "build_partition",
    "dirichlet",
    "domain_dirichlet",
    "iid",
    "mark_heldout",
    "one_domain_per_client",
    "pathological",
    "quantity_dirichlet",
    "quantity_skew",
    "shards",
]
