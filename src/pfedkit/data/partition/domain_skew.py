"""Feature skew by domain: one domain per client, or a Dirichlet mix of domains per client."""

from __future__ import annotations

import numpy as np

from pfedkit.core.errors import PartitionError
from pfedkit.data.partition._assign import (
    check_min_size,
    check_num_clients,
    compact_codes,
    cut_counts,
    even_counts,
    indices_by_owner,
    owners_in_order,
    scatter_owner,
    shuffled_group_order,
)
from pfedkit.data.partition.base import Partition


def one_domain_per_client(
    labels: np.ndarray,
    domains: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    min_size: int = 10,
) -> Partition:
    """Each client holds samples of exactly one domain; clients are spread evenly over domains.

    Domain d gets floor(K / D) or ceil(K / D) clients (which domains get the extra ones is
    random) and its samples are shuffled and split near-equally among them, so labels inside a
    domain are IID. Which client gets which domain is shuffled as well.

    Args:
        labels: (N,) int labels (only the length is used).
        domains: (N,) int domain id of each sample.
        num_clients: K >= number of domains D.
        rng: source of all randomness.
        min_size: minimum samples per client.

    Returns:
        K disjoint sorted index arrays covering all N samples; ``client_meta[k]["domain"]`` is
        the client's domain id (an int, as in ``domains``).
    """
    n = _check_domains(labels, domains)
    check_num_clients(n, num_clients)
    check_min_size(n, num_clients, min_size)
    uniques, dom = compact_codes(domains)
    num_domains = len(uniques)
    if num_clients < num_domains:
        raise PartitionError(
            f"data.num_clients={num_clients} is fewer than the {num_domains} domains and each "
            f"domain needs a client: raise data.num_clients to at least {num_domains}"
        )
    client_domain = rng.permutation(np.resize(rng.permutation(num_domains), num_clients))
    totals = np.bincount(dom, minlength=num_domains)
    per_domain = np.bincount(client_domain, minlength=num_domains)
    smallest = totals // per_domain
    bad = np.flatnonzero(smallest < max(min_size, 1))
    if len(bad):
        d = bad[0]
        raise PartitionError(
            f"domain {uniques[d]} has {totals[d]} samples for {per_domain[d]} clients, fewer than "
            f"partition.min_size={min_size} each: lower partition.min_size or data.num_clients"
        )
    width = int(per_domain.max())
    slots = np.full((num_domains, width), -1, dtype=np.int64)
    counts = np.zeros_like(slots)
    for d in range(num_domains):
        who = np.flatnonzero(client_domain == d)
        slots[d, : len(who)] = who
        counts[d, : len(who)] = even_counts(int(totals[d]), len(who))
    order = shuffled_group_order(dom, rng)
    meta = [{"domain": int(uniques[d])} for d in client_domain]
    owner = scatter_owner(order, owners_in_order(slots, counts))
    return Partition(indices_by_owner(owner, num_clients), meta)


def domain_dirichlet(
    labels: np.ndarray,
    domains: np.ndarray,
    num_clients: int,
    alpha: float,
    alpha_domain: float,
    rng: np.random.Generator,
    min_size: int = 10,
    max_tries: int = 100,
) -> Partition:
    """Each client mixes domains with proportions ~ Dir(alpha_domain) and classes ~ Dir(alpha).

    Client k draws a domain mix q_k ~ Dir(alpha_domain 1_D) and a class mix p_k ~ Dir(alpha 1_C).
    The samples of each (domain d, class c) cell go to clients in proportion to q_k[d] p_k[c]
    (cut at cumulative proportions, so cells are split exactly). Small alpha_domain gives
    clients dominated by one domain, large alpha_domain clients that mix all domains alike;
    alpha does the same for classes. The count table is redrawn until every client holds
    ``min_size`` samples, at most ``max_tries`` times.

    Args:
        labels: (N,) int class labels.
        domains: (N,) int domain id of each sample.
        num_clients: K.
        alpha: class concentration, > 0.
        alpha_domain: domain concentration, > 0.
        rng: source of all randomness.
        min_size: minimum samples per client.
        max_tries: redraws before giving up with PartitionError.

    Returns:
        K disjoint sorted index arrays covering all N samples; ``client_meta[k]["main_domain"]``
        is the domain id the client holds most of.
    """
    n = _check_domains(labels, domains)
    check_num_clients(n, num_clients)
    for key, value in (("partition.alpha", alpha), ("partition.alpha_domain", alpha_domain)):
        if not value > 0:
            raise PartitionError(f"{key} must be > 0, got {value}")
    check_min_size(n, num_clients, min_size)
    dom_ids, dom = compact_codes(domains)
    _, cls = compact_codes(labels)
    num_domains, num_classes = len(dom_ids), int(cls.max()) + 1
    cell = dom * num_classes + cls
    totals = np.bincount(cell, minlength=num_domains * num_classes)
    for _ in range(max(1, max_tries)):
        q = rng.dirichlet(np.full(num_domains, float(alpha_domain)), size=num_clients)  # (K, D)
        p = rng.dirichlet(np.full(num_classes, float(alpha)), size=num_clients)  # (K, C)
        weights = (q[:, :, None] * p[:, None, :]).reshape(num_clients, -1).T  # (D*C, K)
        counts = cut_counts(totals, weights)
        if counts.sum(axis=0).min() >= min_size:
            break
    else:
        raise PartitionError(
            f"domain-Dirichlet partition with partition.alpha={alpha}, partition.alpha_domain="
            f"{alpha_domain}: no draw in {max_tries} tries gave every one of {num_clients} clients "
            f"at least partition.min_size={min_size} samples; raise partition.alpha or "
            f"partition.alpha_domain, lower partition.min_size or use fewer data.num_clients"
        )
    slots = np.broadcast_to(np.arange(num_clients), counts.shape)
    order = shuffled_group_order(cell, rng)
    owner = scatter_owner(order, owners_in_order(slots, counts))
    per_domain = counts.reshape(num_domains, num_classes, num_clients).sum(axis=1)  # (D, K)
    meta = [{"main_domain": int(dom_ids[d])} for d in per_domain.argmax(axis=0)]
    return Partition(indices_by_owner(owner, num_clients), meta)


def _check_domains(labels: np.ndarray, domains: np.ndarray) -> int:
    if domains is None or np.shape(domains) != np.shape(labels):
        raise PartitionError(
            "a domain partition needs one domain id per sample (a multi-domain dataset such as "
            f"digits-md); got domains of shape {None if domains is None else np.shape(domains)} "
            f"for labels of shape {np.shape(labels)}"
        )
    return len(labels)
