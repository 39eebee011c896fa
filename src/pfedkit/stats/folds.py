"""Stratified k-fold splits of a client's training features, and the cross-validated choice
among candidates (pFedFDA's beta, pFedGM's ``gain = interpolate``) built on them."""

from __future__ import annotations

import math
from typing import Callable, Iterable, TypeVar

import torch
from torch import Tensor

Candidate = TypeVar("Candidate")
FoldState = TypeVar("FoldState")


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


def cross_validated_choice(y: Tensor, num_classes: int, k: int, generator: torch.Generator,
                           candidates: Iterable[Candidate], fit_fold: Callable[[Tensor], FoldState],
                           fold_loss: Callable[[Candidate, FoldState, Tensor], float]) -> Candidate | None:
    """The candidate with the smallest k-fold cross-validated loss (e.g. an interpolation weight).

    The folds are those of `cv_splits` (stratified; classes with fewer than ``k`` samples are
    left out). Each fold's state is computed once, in fold order, by ``fit_fold(train)``; a
    candidate's loss is ``fold_loss(candidate, state_f, test_f)`` summed over the folds in fold
    order, as Python floats starting from 0.0. Candidates are tried in the given order and a
    later one replaces the best only if its loss is strictly smaller, so the first minimiser wins.

    Args:
        y: (n,) int64 labels of the client's samples.
        num_classes: C; labels lie in [0, C).
        k: number of folds (>= 2).
        generator: randomness of the fold assignment.
        candidates: the values to choose from, tried in order (any type: floats, tensors...).
        fit_fold: ``train`` (n,) bool mask over the n samples -> the fold's state (for
            instance the statistics of the training side).
        fold_loss: (candidate, fold state, ``test`` (n,) bool mask over the n samples) -> the
            held-out loss of the candidate on that fold, a float.
    Returns:
        The first candidate with the smallest summed loss; None when no k-fold split exists
        (see `cv_splits`), there are no candidates, or no summed loss is below +inf (all NaN).
    """
    split = cv_splits(y, num_classes, k, generator)
    if split is None:
        return None
    keep, folds = split

    def on_all(mask: Tensor) -> Tensor:  # a mask over the kept samples -> the same mask over all n
        full = torch.zeros_like(keep)
        full[keep] = mask
        return full

    parts = [(fit_fold(on_all(tr)), on_all(te)) for tr, te in folds]
    best, best_loss = None, math.inf
    for candidate in candidates:
        loss = 0.0
        for state, test in parts:
            loss += fold_loss(candidate, state, test)
        if loss < best_loss:
            best, best_loss = candidate, loss
    return best
