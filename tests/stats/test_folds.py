"""Stratified folds and the generic cross-validated choice (pFedFDA's beta, pFedGM's interpolate)."""

from __future__ import annotations

import math

import torch

from pfedkit.stats.folds import cross_validated_choice, cv_splits


def toy():
    """Two classes of 6 samples and one class of 1 (left out for k = 2, 3); x = 2 everywhere."""
    y = torch.tensor([0] * 6 + [1] * 6 + [2])
    x = torch.full((13,), 2.0, dtype=torch.float64)
    return x, y


def test_picks_the_known_minimiser_and_calls_in_fold_order():
    x, y = toy()
    fits, calls = [], []

    def fit_fold(train):
        fits.append(train)
        return float(x[train].mean())

    def fold_loss(c, mean, test):
        calls.append((c, len(fits)))
        return float(((x[test] - c * mean) ** 2).sum())

    grid = [0.0, 0.5, 1.0, 1.5]
    assert cross_validated_choice(y, 3, 3, torch.Generator().manual_seed(0), grid, fit_fold, fold_loss) == 1.0
    assert len(fits) == 3  # each fold's state is computed once, before any candidate
    assert [c for c, _ in calls] == [c for c in grid for _ in range(3)]
    assert all(n == 3 for _, n in calls)
    for train in fits:  # masks over all n samples; the singleton class is never used
        assert train.shape == y.shape and train.dtype == torch.bool and not bool(train[-1])


def test_masks_match_cv_splits():
    x, y = toy()
    keep, folds = cv_splits(y, 3, 2, torch.Generator().manual_seed(4))
    tests = []
    cross_validated_choice(y, 3, 2, torch.Generator().manual_seed(4), [0.0], lambda tr: tr,
                           lambda c, tr, te: tests.append((tr, te)) or 0.0)
    for (tr, te), (tr_k, te_k) in zip(tests, folds):
        assert torch.equal(tr[keep], tr_k) and torch.equal(te[keep], te_k)
        assert not bool((tr | te)[~keep].any())


def test_first_minimum_wins():
    _, y = toy()
    losses = {"a": 2.0, "b": 1.0, "c": 1.0, "d": math.nan}
    pick = cross_validated_choice(y, 3, 2, torch.Generator().manual_seed(0), "abcd", lambda tr: None,
                                  lambda c, state, te: losses[c])
    assert pick == "b"


def test_none_without_a_split_or_a_finite_loss():
    y = torch.tensor([0, 1, 2, 2])  # every class has fewer than k = 3 samples
    called = []
    assert cross_validated_choice(y, 3, 3, torch.Generator().manual_seed(0), [0.0, 1.0],
                                  lambda tr: called.append(tr), lambda c, s, te: 0.0) is None
    assert not called
    _, y = toy()
    gen = torch.Generator().manual_seed(0)
    assert cross_validated_choice(y, 3, 2, gen, [0.0, 1.0], lambda tr: None, lambda c, s, te: math.nan) is None
    assert cross_validated_choice(y, 3, 2, gen, [], lambda tr: None, lambda c, s, te: 0.0) is None
