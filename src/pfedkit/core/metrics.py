"""Accuracy summaries across clients, as the evaluation protocol reports them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AccuracySummary:
    """Summary of per-client accuracies (fractions in [0, 1]).

    mean: client-mean; weighted: sample-weighted mean; std: std across clients;
    worst10: mean of the worst 10 % of clients (at least one client).
    """

    mean: float
    weighted: float
    std: float
    worst10: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(correct: np.ndarray, total: np.ndarray) -> AccuracySummary:
    """Summarise per-client correct counts (K,) over per-client sample counts (K,).

    Clients with no samples are left out of the client-level statistics.
    """
    correct = np.asarray(correct, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    keep = total > 0
    if not keep.any():
        nan = float("nan")
        return AccuracySummary(nan, nan, nan, nan)
    acc = correct[keep] / total[keep]
    worst_n = max(1, math.ceil(0.1 * len(acc)))
    return AccuracySummary(
        mean=float(acc.mean()),
        weighted=float(correct[keep].sum() / total[keep].sum()),
        std=float(acc.std()),
        worst10=float(np.sort(acc)[:worst_n].mean()),
    )


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and (population) std over seeds."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())
