"""Stratified k-fold splits of a client's training features, for cross-validated statistics."""

from __future__ import annotations

import torch
from torch import Tensor


def stratified_folds(y: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """(n,) fold index in [0, k): each class's samples in random order, dealt round-robin."""
    fold = torch.empty_like(y)
    for c in torch.unique(y).tolist():
        pos = torch.nonzero(y == c).flatten()
        perm = pos[torch.randperm(pos.numel(), generator=generator).to(pos.device)]
        fold[perm] = torch.arange(perm.numel(), device=y.device) % k
    return fold


def cv_splits(y: Tensor, num_classes: int, k: int, generator: torch.Generator
              ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]] | None:
    """Stratified k-fold cross-validation over the samples whose class has at least k samples.

    Args:
        y: (n,) labels.
    Returns:
        ``(keep, folds)``: keep (n,) bool marks the samples used; folds holds k (train, test) bool
        masks over the kept samples. None when no k-fold split with non-empty sides exists.
    """
    keep = torch.bincount(y, minlength=num_classes)[y] >= k
    y = y[keep]
    if y.numel() < k:
        return None
    fold = stratified_folds(y, k, generator)
    folds = [(fold != f, fold == f) for f in range(k)]
    if any(not bool(te.any()) or not bool(tr.any()) for tr, te in folds):
        return None
    return keep, folds
