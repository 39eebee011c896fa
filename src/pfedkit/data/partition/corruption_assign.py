"""Environmental heterogeneity: give each client of a partition one (corruption, severity)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pfedkit.core.errors import ConfigError
from pfedkit.data.corruptions import CORRUPTIONS, SEVERITIES
from pfedkit.data.partition.base import Partition


def assign_corruptions(
    partition: Partition,
    rng: np.random.Generator,
    corruption: str | Sequence[str] = "random",
    severity: int | Sequence[int] = 0,
) -> Partition:
    """Return a copy of ``partition`` whose clients each carry a corruption type and severity.

    The pair is stored in ``client_meta[k]["corruption"]`` (str) and ``["severity"]`` (int 1..5);
    a client applies it to its train, val and test data alike.

    Args:
        partition: the partition to decorate (indices are kept).
        rng: source of the random choices.
        corruption: a name from ``CORRUPTIONS`` (every client gets it), ``"random"`` (types drawn
            from all of ``CORRUPTIONS``) or a sequence of names to draw from. Random types are
            dealt in a balanced way: each type goes to floor(K/T) or ceil(K/T) clients.
        severity: 1..5 (every client), 0 (each client draws uniformly from 1..5) or a sequence
            of severities to draw from.

    Raises:
        ConfigError: unknown corruption name or severity; the message lists the allowed values.
    """
    k = partition.num_clients
    if isinstance(corruption, str):
        choices = CORRUPTIONS if corruption == "random" else (corruption,)
    else:
        choices = tuple(corruption)
    bad = [c for c in choices if c not in CORRUPTIONS]
    if bad or not choices:
        raise ConfigError(
            f"partition.corruption={corruption!r} is not valid; use 'none', 'random', or any of "
            f"{', '.join(CORRUPTIONS)}"
        )
    levels = (severity,) if isinstance(severity, (int, np.integer)) else tuple(severity)
    levels = SEVERITIES[1:] if levels == (0,) else levels
    if not levels or any(int(s) not in SEVERITIES[1:] for s in levels):
        raise ConfigError(
            f"partition.severity={severity!r} is not valid; use 1..5, or 0 for a random severity "
            f"per client"
        )
    types = rng.permutation(np.resize(rng.permutation(len(choices)), k))
    sev = rng.choice(np.asarray(levels, dtype=np.int64), size=k)
    meta = [dict(m) for m in partition.client_meta] or [{} for _ in range(k)]
    for i in range(k):
        meta[i]["corruption"] = choices[int(types[i])]
        meta[i]["severity"] = int(sev[i])
    return Partition(partition.client_indices, meta)
