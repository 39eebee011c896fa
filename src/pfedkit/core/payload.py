"""Payloads: named tensors that travel between server and clients (weights and statistics alike)."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

Payload = dict[str, torch.Tensor]


def payload_nbytes(payload: Payload) -> int:
    """Bytes the payload's tensors occupy (what a transport must move, before compression)."""
    return sum(t.numel() * t.element_size() for t in payload.values())


def clone_payload(payload: Payload, device: torch.device | str | None = None) -> Payload:
    """Detached copies of every tensor, optionally moved to ``device``."""
    return {k: t.detach().to(device=device, copy=True) if device else t.detach().clone() for k, t in payload.items()}


def select(payload: Payload, keys: Iterable[str]) -> Payload:
    """The sub-payload with the given keys (tensors are shared, not copied)."""
    return {k: payload[k] for k in keys}


def with_prefix(payload: Payload, prefix: str) -> Payload:
    """The entries whose key starts with ``prefix``."""
    return {k: v for k, v in payload.items() if k.startswith(prefix)}


def weighted_average(payloads: Sequence[Payload], weights: Sequence[float]) -> Payload:
    """Per-key weighted mean of floating tensors; integer tensors (counters) take the maximum.

    Args:
        payloads: same keys and shapes in each.
        weights: one non-negative weight per payload; normalised here.
    """
    if not payloads:
        raise ValueError("weighted_average needs at least one payload")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weighted_average needs a positive total weight")
    out: Payload = {}
    for key in payloads[0]:
        first = payloads[0][key]
        if first.is_floating_point():
            acc = torch.zeros_like(first, dtype=torch.float64 if first.dtype == torch.float64 else torch.float32)
            for p, w in zip(payloads, weights):
                acc.add_(p[key].to(acc.dtype), alpha=float(w) / total)
            out[key] = acc.to(first.dtype)
        else:
            out[key] = torch.stack([p[key] for p in payloads]).amax(dim=0)
    return out
