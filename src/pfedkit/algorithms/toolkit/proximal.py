"""The proximal penalty ||w - w_anchor||^2 of FedProx and Ditto, one definition for the serial
and the batched path."""

from __future__ import annotations

from typing import Iterable

from torch import Tensor


def squared_distance(pairs: Iterable[tuple[Tensor, Tensor]]) -> Tensor:
    """sum over (w, a) pairs of ||w - a||^2 (a scalar); tensors of any shape, differentiable in w."""
    return sum(((p - a) ** 2).sum() for p, a in pairs)  # type: ignore[return-value]
