"""The divergence guard: a round whose numbers are no longer finite stops the run.

Engines call `check_round` once per training round, after aggregation and before any callback
sees the round, so a diverged round is never recorded or checkpointed: the last checkpoint is the
last good state. A round has diverged when, for some client,

- a tensor of its upload or of its new personal state is not finite (see below), or
- one of its losses (metrics named ``*loss``: ``train_loss``, ``personal_loss``, ...) is ±inf,

or when a tensor of the aggregated server state is not finite. "Not finite" means NaN or ±inf
for the model's own tensors (keys of the workspace model's ``state_dict``: weights must stay
finite), and NaN for a method's other tensors (statistics, prototypes, filter states), where +inf
is a legitimate value (pFedGM's filter holds an infinite uncertainty until its first observation).

A NaN loss with finite tensors is not divergence: the protocol uses NaN for "no value" (a client
without training samples, a method with nothing to train, see ``train_epochs``); a NaN loss from
real training makes the trained weights NaN, which the tensor check catches. Other metrics are
reports, not training quantities (an accountant's epsilon may be inf), and are not checked.
When a client's tensors are not finite, the message names its non-finite loss if it has one
(``train_loss`` first), else the tensor.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate
from pfedkit.core.errors import PfedkitError
from pfedkit.core.payload import Payload


class DivergenceError(PfedkitError):
    """Training produced non-finite numbers; the message names the round, client and quantity.
    Like every `PfedkitError`, the CLI prints it as one line and exits with code 2."""


def check_round(algo: Algorithm, r: int, updates: Sequence[ClientUpdate], server: Payload) -> None:
    """Raise DivergenceError if round ``r``'s updates or the aggregated ``server`` state are not finite.

    Args:
        algo: the running algorithm (its model's keys must be finite; its ``train.lr`` is quoted).
        r: the round (0 is the warm-up round).
        updates: the round's client updates (uploads, personal states, metrics).
        server: the server state ``aggregate`` returned for the round.
    """
    advice = f"lower train.lr (now {algo.train.lr:g}) or check the data"
    weights = frozenset(algo.model.state_dict())
    for u in updates:
        bad_tensor = first_nonfinite(u.upload, "upload", weights) or first_nonfinite(u.state, "personal state", weights)
        bad_loss = _first_bad_loss(u.metrics, nan_counts=bad_tensor is not None)
        if bad_loss is not None:
            name, value = bad_loss
            raise DivergenceError(f"round {r}, client {u.client_id}: {name} is {value}; {advice}")
        if bad_tensor is not None:
            raise DivergenceError(f"round {r}, client {u.client_id}: {bad_tensor} has non-finite values; {advice}")
    bad_server = first_nonfinite(server, "aggregated server state", weights)
    if bad_server is not None:
        raise DivergenceError(f"round {r}: {bad_server} has non-finite values after aggregation; {advice}")


def first_nonfinite(payload: Payload, what: str, weights: frozenset[str] = frozenset()) -> str | None:
    """``"<what> '<key>'"`` for the first floating tensor of ``payload`` that is not finite (NaN
    or ±inf for keys in ``weights``, NaN for the others), else None. One host synchronisation
    per device when every tensor passes."""
    floating = {k: t for k, t in payload.items() if t.is_floating_point() or t.is_complex()}
    ok = {k: torch.isfinite(t).all() if k in weights else ~torch.isnan(t).any() for k, t in floating.items()}
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for flag in ok.values():
        by_device.setdefault(flag.device, []).append(flag)
    if all(bool(torch.stack(flags).all()) for flags in by_device.values()):
        return None
    key = next(k for k, flag in ok.items() if not bool(flag))
    return f"{what} {key!r}"


def _first_bad_loss(metrics: dict[str, float], nan_counts: bool) -> tuple[str, float] | None:
    """(name, value) of the first infinite loss metric (or NaN one when ``nan_counts``), ``train_loss`` first."""
    names = sorted((n for n in metrics if n.endswith("loss")), key=lambda n: n != "train_loss")
    for name in names:
        value = float(metrics[name])
        if math.isinf(value) or (nan_counts and math.isnan(value)):
            return name, value
    return None
