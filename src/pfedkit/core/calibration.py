"""Expected calibration error (ECE) with equal-width confidence bins (Guo et al., 2017).

ECE = sum_b (n_b / N) |acc_b - conf_b| over M equal-width bins of the max predicted
probability; bin b = 1..M holds confidences in ((b-1)/M, b/M] (a confidence of exactly
0 goes to the first bin). Since (n_b / N) |acc_b - conf_b| = |sum_conf_b - sum_correct_b| / N,
three additive per-bin arrays (count, sum of confidences, sum of correct) are sufficient
statistics: `CalibrationBins` accumulates them over batches, and bins of several clients
add up, so ECE can be computed per client or over all clients (spec §5).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

DEFAULT_BINS = 15


def _numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class CalibrationBins:
    """Streaming per-bin calibration statistics.

    Attributes:
        n_bins: M.
        counts: (M,) int64, predictions per bin.
        conf_sum: (M,) float64, sum of max confidences per bin.
        correct_sum: (M,) float64, number of correct predictions per bin.
    """

    def __init__(self, n_bins: int = DEFAULT_BINS) -> None:
        if n_bins < 1:
            raise ValueError(f"CalibrationBins: n_bins must be >= 1, got {n_bins}")
        self.n_bins = n_bins
        self.counts = np.zeros(n_bins, dtype=np.int64)
        self.conf_sum = np.zeros(n_bins, dtype=np.float64)
        self.correct_sum = np.zeros(n_bins, dtype=np.float64)

    @property
    def total(self) -> int:
        """N, the number of predictions added."""
        return int(self.counts.sum())

    def add(self, probs: ArrayLike, labels: ArrayLike) -> None:
        """Add a batch of predictions: probs (N, C) class probabilities, labels (N,) ints."""
        probs_np = _numpy(probs).astype(np.float64, copy=False)
        labels_np = _numpy(labels)
        if probs_np.ndim != 2 or labels_np.shape != (probs_np.shape[0],):
            raise ValueError(f"add: need probs (N, C) and labels (N,), got {probs_np.shape}, {labels_np.shape}")
        self.add_confidences(probs_np.max(axis=1), probs_np.argmax(axis=1) == labels_np)

    def add_confidences(self, confidences: ArrayLike, correct: ArrayLike) -> None:
        """Add a batch given confidences (N,) in [0, 1] and correct (N,) bools (or 0/1)."""
        conf = _numpy(confidences).astype(np.float64, copy=False).reshape(-1)
        hit = _numpy(correct).astype(np.float64, copy=False).reshape(-1)
        if conf.shape != hit.shape:
            raise ValueError(f"add_confidences: shapes differ, {conf.shape} vs {hit.shape}")
        idx = np.clip(np.ceil(conf * self.n_bins).astype(np.int64) - 1, 0, self.n_bins - 1)
        self.counts += np.bincount(idx, minlength=self.n_bins)
        self.conf_sum += np.bincount(idx, weights=conf, minlength=self.n_bins)
        self.correct_sum += np.bincount(idx, weights=hit, minlength=self.n_bins)

    def merge(self, other: CalibrationBins) -> CalibrationBins:
        """A new accumulator holding the predictions of both (neither input changes)."""
        if other.n_bins != self.n_bins:
            raise ValueError(f"merge: bin counts differ, {self.n_bins} vs {other.n_bins}")
        out = CalibrationBins(self.n_bins)
        out.counts = self.counts + other.counts
        out.conf_sum = self.conf_sum + other.conf_sum
        out.correct_sum = self.correct_sum + other.correct_sum
        return out

    def __add__(self, other: CalibrationBins) -> CalibrationBins:
        return self.merge(other)

    def without(self, other: CalibrationBins) -> CalibrationBins:
        """A new accumulator holding this one's predictions less ``other``'s (which must have
        been added to this one, e.g. one group of clients out of a pooled total). Bins left
        empty get exact zero sums, so floating-point residue never reaches `ece`."""
        if other.n_bins != self.n_bins:
            raise ValueError(f"without: bin counts differ, {self.n_bins} vs {other.n_bins}")
        counts = self.counts - other.counts
        if (counts < 0).any():
            raise ValueError("without: other holds predictions this accumulator does not")
        out = CalibrationBins(self.n_bins)
        empty = counts == 0
        out.counts = counts
        out.conf_sum = np.where(empty, 0.0, self.conf_sum - other.conf_sum)
        out.correct_sum = np.where(empty, 0.0, self.correct_sum - other.correct_sum)
        return out

    def to_dict(self) -> dict[str, list[Any]]:
        """The three arrays as plain lists (JSON-serialisable): ``{"counts": [int] * M,
        "conf_sum": [float] * M, "correct_sum": [float] * M}``."""
        return {"counts": [int(v) for v in self.counts], "conf_sum": [float(v) for v in self.conf_sum],
                "correct_sum": [float(v) for v in self.correct_sum]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationBins:
        """The inverse of `to_dict` (other keys of ``d`` are ignored)."""
        counts = np.asarray(d["counts"], dtype=np.int64)
        if counts.ndim != 1 or len(counts) < 1:
            raise ValueError(f"from_dict: counts must be a non-empty list, got shape {counts.shape}")
        out = cls(len(counts))
        out.counts = counts
        out.conf_sum = np.asarray(d["conf_sum"], dtype=np.float64).reshape(out.n_bins)
        out.correct_sum = np.asarray(d["correct_sum"], dtype=np.float64).reshape(out.n_bins)
        return out

    def ece(self) -> float:
        """Expected calibration error in [0, 1]; NaN (``math.nan``) if nothing was added."""
        n = self.total
        if n == 0:
            return math.nan
        return float(np.abs(self.conf_sum - self.correct_sum).sum() / n)


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_BINS) -> float:
    """ECE of class probabilities probs (N, C) against integer labels (N,)."""
    bins = CalibrationBins(n_bins)
    bins.add(probs, labels)
    return bins.ece()


def confidence_ece(confidences: ArrayLike, correct: ArrayLike, n_bins: int = DEFAULT_BINS) -> float:
    """ECE from max confidences (N,) and correctness (N,) bools."""
    bins = CalibrationBins(n_bins)
    bins.add_confidences(confidences, correct)
    return bins.ece()
