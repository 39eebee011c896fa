"""Class prototypes (per-class mean features): computed on a client, averaged on the server,
and used as alignment targets. Shared by FedProto and FedPAC.

Payload conventions (float32): a client uploads ``proto.means`` (C, d) and ``proto.counts``
(C,); the server keeps ``proto.means`` (C, d) and ``proto.available`` (C,), 1.0 for classes
that some client has ever reported, 0.0 otherwise (their rows are 0).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from pfedkit.algorithms.toolkit.training import features_in_batches
from pfedkit.models.split import SplitModel

PREFIX = "proto."
"""Key prefix of the prototype entries; a method that uses them lists it in ``shared_prefixes``."""
MEANS = PREFIX + "means"
COUNTS = PREFIX + "counts"
AVAILABLE = PREFIX + "available"


def class_prototypes(z: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class mean of features.

    Args:
        z: (n, d) features. y: (n,) integer labels in [0, num_classes).
    Returns:
        means (C, d) float32 (rows of absent classes are 0) and counts (C,) float32.
    """
    z = z.detach().float()
    counts = torch.bincount(y, minlength=num_classes).to(z.dtype)
    sums = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, y, z)
    return sums / counts.clamp_min(1.0)[:, None], counts


def model_prototypes(model: SplitModel, x: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Prototypes of the body features of ``x`` (n, C, H, W) computed in eval mode, no gradient:
    means (C, d), counts (C,) as in `class_prototypes`."""
    return class_prototypes(features_in_batches(model, x), y, num_classes)


def empty_prototypes(num_classes: int, dim: int, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """Server entries before any upload: zero means (C, d) and nothing available (C,)."""
    return {MEANS: torch.zeros(num_classes, dim, device=device), AVAILABLE: torch.zeros(num_classes, device=device)}


def aggregate_prototypes(
    means: list[Tensor], counts: list[Tensor], previous: Tensor, previous_available: Tensor,
    weighting: str = "samples",
) -> tuple[Tensor, Tensor]:
    """Global prototypes from the clients' uploads.

    For each class c held by at least one uploading client: ``sum_k w_kc m_kc / sum_k w_kc`` with
    ``w_kc = n_kc`` (``weighting="samples"``) or ``w_kc = 1[n_kc > 0]`` (``"clients"``). A class no
    uploading client holds keeps its previous value and availability.

    Args:
        means: K tensors (C, d). counts: K tensors (C,). previous: (C, d). previous_available: (C,).
    Returns:
        (C, d) global prototypes and (C,) availability in {0., 1.}.
    """
    m = torch.stack([t.float() for t in means])  # (K, C, d)
    n = torch.stack([t.float() for t in counts])  # (K, C)
    if weighting == "samples":
        w = n
    elif weighting == "clients":
        w = (n > 0).float()
    else:
        raise ValueError(f"weighting must be 'samples' or 'clients', got {weighting!r}")
    total = w.sum(0)  # (C,)
    held = total > 0
    new = (w[..., None] * m).sum(0) / total.clamp_min(1e-12)[:, None]
    prev = previous.to(new)
    out = torch.where(held[:, None], new, prev)
    available = torch.where(held, torch.ones_like(total), previous_available.to(total))
    return out, available


def alignment_loss(z: Tensor, y: Tensor, targets: Tensor, available: Tensor) -> Tensor:
    """Mean squared distance of features to their class's target prototype.

    ``sum_i 1[available[y_i]] ||z_i - targets[y_i]||^2 / (B d)``: the element-wise MSE over the
    batch, where samples whose class has no target contribute 0 (as in FedProto's and FedPAC's
    code, which substitute the sample's own feature as its target).

    Args:
        z: (B, d) features (with gradient). y: (B,) labels. targets: (C, d). available: (C,).
    Returns:
        scalar loss.
    """
    t = targets.to(z)[y]
    mask = available.to(z)[y]
    return (mask[:, None] * (z - t) ** 2).sum() / z.numel()


def prototype_regularised_ce(model: SplitModel, lam: float, targets: torch.Tensor, available: torch.Tensor
                             ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Loss of a batch: CE of ``model`` + lam * ``alignment_loss`` of its features to the global
    prototypes ``targets`` (C, d) of the ``available`` (C,) classes (FedProto, FedPAC)."""

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        z = model.features(xb)
        loss = F.cross_entropy(model.head(z), yb)
        if lam > 0:
            loss = loss + lam * alignment_loss(z, yb, targets, available)
        return loss

    return loss_fn
