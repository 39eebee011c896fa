"""Checks on what a client sends back before the server aggregates it.

A reply is rejected (logged, not aggregated; the run goes on) when its upload has a key the
algorithm does not own, a tensor whose shape or dtype differs from the reference, a non-finite
value in a floating tensor, or a weight that is negative or not finite. The reference of a key is
the server state's tensor when the server holds that key (weights), else the shape and dtype that
a strict majority of the round's replies agree on (statistics that only clients produce).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable

import torch

from pfedkit.core.payload import Payload

Spec = tuple[tuple[int, ...], torch.dtype]


def spec_of(t: torch.Tensor) -> Spec:
    return tuple(t.shape), t.dtype


def reference_specs(server: Payload, uploads: list[Payload]) -> dict[str, Spec]:
    """Expected (shape, dtype) per key: the server's tensor if it has the key, else the spec a
    strict majority of ``uploads`` carrying that key agree on (keys without one are absent)."""
    ref: dict[str, Spec] = {}
    seen: dict[str, Counter[Spec]] = {}
    for up in uploads:
        for key, t in up.items():
            seen.setdefault(key, Counter())[spec_of(t)] += 1
    for key, counts in seen.items():
        if key in server:
            ref[key] = spec_of(server[key])
            continue
        spec, n = counts.most_common(1)[0]
        if 2 * n > sum(counts.values()):
            ref[key] = spec
    return ref


def upload_problem(upload: Payload, weight: float, ref: dict[str, Spec], key_check: Callable[[Payload], None]
                   ) -> str | None:
    """Why the upload must not be aggregated, or None when it passes every check.

    ``key_check`` raises ValueError for a key the algorithm does not own
    (`pfedkit.algorithms.protocol.Algorithm.check_keys`).
    """
    try:
        key_check(upload)
    except ValueError as err:
        return str(err)
    if not math.isfinite(weight) or weight < 0:
        return f"aggregation weight {weight} is not a finite non-negative number"
    for key, t in upload.items():
        want = ref.get(key)
        if want is None:
            return f"key {key!r}: no reference shape/dtype (the round's replies disagree on it)"
        if spec_of(t) != want:
            return (f"key {key!r}: shape {tuple(t.shape)} dtype {t.dtype}, expected shape {want[0]} "
                    f"dtype {want[1]}")
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            return f"key {key!r}: non-finite values"
    return None
