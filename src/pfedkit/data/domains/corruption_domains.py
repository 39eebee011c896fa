"""Corruption types as domains: feature skew and mixed domains on any dataset.

With ``data.domains=corruptions`` every image of the (already subsampled) pool is given one
domain out of ``data.domain_corruptions`` (e.g. ``none,fog,gaussian_noise,contrast``; ``none``
is the clean image) and that corruption is applied to it at ``data.domain_severity``. The
result is a Pool with ``domain`` and ``domain_names`` set, so ``partition.scheme=domain`` (one
domain per client) and ``domain-dirichlet`` (a Dirichlet mix of domains per client) work on
digits, fashion-mnist, cifar10, ... as they do on the multi-domain ``digits-md``.

Assignment is balanced inside each class: the images of a class are shuffled and dealt
round-robin over the domains, each class starting where the previous one stopped, so every
class and the whole pool hold each domain within one image of an equal share. Each domain's
images are corrupted as one batch by :func:`pfedkit.data.corruptions.corrupt` with a generator
derived from ``(seed, domain index)``; everything is deterministic from the seed.

All corruption types run on scikit-learn's 8x8 ``digits`` as well as on 28x28 and 32x32
images; their severity constants were chosen for 32x32, so on 8x8 the blurs are strong and
``pixelate`` is not monotone in severity (at 8x8 its block sizes round to few distinct values).

This is a different feature from ``partition.corruption``, which corrupts whole clients after
partitioning; the two can be combined (a client's corruption then stacks on its domains').
"""

from __future__ import annotations

import numpy as np
import torch

from pfedkit.core.config import DataConfig, check_domain_names, register_choices
from pfedkit.core.errors import ConfigError
from pfedkit.core.seeding import numpy_generator, torch_generator
from pfedkit.data.corruptions import CORRUPTIONS, corrupt
from pfedkit.data.pool import Pool

CLEAN = "none"
"""The domain name meaning "the image as it is"."""

DOMAIN_CHOICES: tuple[str, ...] = (CLEAN, *CORRUPTIONS)
"""Every name ``data.domain_corruptions`` may list."""

_SEED_TAG = 0xD0C0

register_choices("data.domain_corruptions", lambda: DOMAIN_CHOICES)


def balanced_domains(labels: np.ndarray, num_domains: int, rng: np.random.Generator) -> np.ndarray:
    """One domain id per sample, balanced inside every class.

    The samples of each class (classes in increasing order) are shuffled by ``rng`` and dealt
    round-robin over ``num_domains`` domains, each class continuing the deal where the previous
    one stopped, so per class and overall the domain counts differ by at most one.

    Args:
        labels: (N,) int class labels.
        num_domains: D >= 1.
        rng: the only source of randomness.

    Returns:
        (N,) int64 domain ids in [0, D).
    """
    if num_domains < 1:
        raise ValueError(f"num_domains must be >= 1, got {num_domains}")
    labels = np.asarray(labels)
    domains = np.empty(len(labels), dtype=np.int64)
    start = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        domains[members] = (start + np.arange(len(members))) % num_domains
        start += len(members)
    return domains


def corruption_domain_pool(pool: Pool, names: tuple[str, ...], severity: int, seed: int) -> Pool:
    """``pool`` with every image given one of ``names`` as its domain and corrupted accordingly.

    Args:
        pool: a pool without domains of its own.
        names: distinct domain names, each ``"none"`` (clean) or one of
            :data:`pfedkit.data.corruptions.CORRUPTIONS`; domain id d is ``names[d]``.
        severity: 1..5, applied to every corrupted domain.
        seed: fixes the assignment and the corruptions' randomness.

    Returns:
        A new Pool (same name, labels and order) with corrupted ``x``, ``domain`` (N,) int64
        and ``domain_names == names``.

    Raises:
        ConfigError: the pool has domains already, or a name or the severity is not valid.
    """
    names = tuple(names)
    check_domain_names(names, DOMAIN_CHOICES, "corruption domains")
    require_no_domains(pool)
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ConfigError(f"data.domain_severity={severity!r} is out of range; allowed [1, 5]")
    domains = balanced_domains(pool.y.numpy(), len(names), numpy_generator(seed, _SEED_TAG))
    x = pool.x.clone()
    for d, name in enumerate(names):
        if name == CLEAN:
            continue
        where = torch.from_numpy(np.flatnonzero(domains == d))
        if len(where):
            x[where] = corrupt(pool.x[where], name, severity, torch_generator(seed, _SEED_TAG, d))
    return Pool(x, pool.y, pool.num_classes, pool.name, torch.from_numpy(domains), names)


def require_no_domains(pool: Pool) -> None:
    """Raise a one-line ConfigError if ``pool`` has domains of its own (corruption domains would
    silently replace them)."""
    if pool.domain is not None:
        raise ConfigError(
            f"data.domains=corruptions needs a dataset without domains of its own; {pool.name!r} has "
            f"{len(set(pool.domain.tolist()))} ({', '.join(pool.domain_names) or 'unnamed'}): "
            f"use data.domains=source"
        )


def domain_corruption_names(data: DataConfig) -> tuple[str, ...]:
    """The validated names of ``data.domain_corruptions``, in order (one-line ConfigError if not)."""
    names = tuple(n.strip() for n in str(data.domain_corruptions).split(",") if n.strip())
    check_domain_names(names, DOMAIN_CHOICES, f"data.domain_corruptions={data.domain_corruptions!r}")
    return names


def check_domain_config(data: DataConfig) -> None:
    """Raise a one-line ConfigError for any invalid ``data.domain*`` key (before any loading)."""
    if data.domains not in ("source", "corruptions"):
        raise ConfigError(f"data.domains={data.domains!r} is not allowed; choose one of source, corruptions")
    if data.domains == "corruptions":
        domain_corruption_names(data)
        if isinstance(data.domain_severity, bool) or data.domain_severity not in (1, 2, 3, 4, 5):
            raise ConfigError(f"data.domain_severity={data.domain_severity!r} is out of range; allowed [1, 5]")


def apply_domain_config(pool: Pool, data: DataConfig, seed: int) -> Pool:
    """The pool with the domains ``data.domains`` asks for: its own, or corruption domains."""
    check_domain_config(data)
    if data.domains == "source":
        return pool
    return corruption_domain_pool(pool, domain_corruption_names(data), data.domain_severity, seed)
