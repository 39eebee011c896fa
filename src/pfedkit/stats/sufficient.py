"""Class-conditional sufficient statistics of features: counts, means, tied scatter.

This is pFedGM's *statistic extractor* (spec §1; the abstract only says "a statistic
extractor for capturing distributional statistics" — what it extracts is our reading):
per class c the count n_c and mean mu_c, and the tied within-class scatter

    S = sum_c sum_{i in c} (z_i - mu_c)(z_i - mu_c)^T        (d, d)

Sigma_hat = S / max(n - C_present, 1) is the tied (pooled within-class) covariance.
pFedFDA's Gaussian head uses the same statistics.

All statistics are float64. Batches and clients are combined with the exact pairwise
update of Chan, Golub & LeVeque (means and scatter of a union from those of its parts),
so the result equals the statistics of the concatenated data up to round-off, whatever
the split. A class with zero count has mean 0 and contributes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pfedkit.stats._linalg import ClassMeansShape, batch_trace, eye_like, symmetrize

STATS_DTYPE = torch.float64


@dataclass(frozen=True)
class ClassStats(ClassMeansShape):
    """Sufficient statistics of labelled features.

    Attributes:
        counts: (C,) float64, samples per class (0 for absent classes).
        means: (C, d) float64, per-class mean; rows of absent classes are 0.
        scatter: (d, d) float64, tied within-class scatter S (sum of outer products of
            deviations from each sample's own class mean; not divided by anything).
    """

    counts: Tensor
    means: Tensor
    scatter: Tensor

    def __post_init__(self) -> None:
        counts = torch.as_tensor(self.counts).to(STATS_DTYPE)
        means = torch.as_tensor(self.means).to(STATS_DTYPE)
        scatter = torch.as_tensor(self.scatter).to(STATS_DTYPE)
        if counts.ndim != 1 or means.ndim != 2 or scatter.ndim != 2:
            raise ValueError(
                f"ClassStats: expected counts (C,), means (C,d), scatter (d,d); got "
                f"{tuple(counts.shape)}, {tuple(means.shape)}, {tuple(scatter.shape)}"
            )
        c, d = means.shape
        if counts.shape[0] != c or scatter.shape != (d, d):
            raise ValueError(
                f"ClassStats: inconsistent shapes counts {tuple(counts.shape)}, "
                f"means {tuple(means.shape)}, scatter {tuple(scatter.shape)}"
            )
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "scatter", scatter)

    @property
    def total(self) -> float:
        """n = sum_c n_c."""
        return float(self.counts.sum())

    @property
    def present(self) -> Tensor:
        """(C,) bool, classes with at least one sample."""
        return self.counts > 0

    @property
    def num_present(self) -> int:
        """C_present, the number of classes with at least one sample."""
        return int(self.present.sum())

    @classmethod
    def empty(cls, num_classes: int, dim: int, device: torch.device | str | None = None) -> ClassStats:
        """Statistics of no data: zero counts, means and scatter."""
        return cls(
            counts=torch.zeros(num_classes, dtype=STATS_DTYPE, device=device),
            means=torch.zeros(num_classes, dim, dtype=STATS_DTYPE, device=device),
            scatter=torch.zeros(dim, dim, dtype=STATS_DTYPE, device=device),
        )

    def to(self, device: torch.device | str) -> ClassStats:
        """Copy onto another device (dtype stays float64)."""
        return ClassStats(self.counts.to(device), self.means.to(device), self.scatter.to(device))

    def to_payload(self, prefix: str = "") -> dict[str, Tensor]:
        """Named tensors {prefix+"counts", prefix+"means", prefix+"scatter"}."""
        return {
            f"{prefix}counts": self.counts,
            f"{prefix}means": self.means,
            f"{prefix}scatter": self.scatter,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Tensor], prefix: str = "") -> ClassStats:
        """Inverse of `to_payload` (extra keys in payload are ignored)."""
        return cls(
            counts=payload[f"{prefix}counts"],
            means=payload[f"{prefix}means"],
            scatter=payload[f"{prefix}scatter"],
        )


def _check_labels(y: Tensor, num_classes: int) -> Tensor:
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {y.dtype}")
    y = y.long()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")
    return y


def batch_stats(z: Tensor, y: Tensor, num_classes: int) -> ClassStats:
    """Sufficient statistics of one batch, computed directly (two-pass, stable).

    Args:
        z: (B, d) features, any float dtype and device; converted to float64.
        y: (B,) integer labels in [0, num_classes).
        num_classes: C.

    Returns:
        ClassStats on z's device.
    """
    if z.ndim != 2:
        raise ValueError(f"features must have shape (B, d), got {tuple(z.shape)}")
    y = _check_labels(y, num_classes)
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"features ({z.shape[0]}) and labels ({y.shape[0]}) differ in length")
    z = z.detach().to(STATS_DTYPE)
    counts = torch.bincount(y, minlength=num_classes).to(STATS_DTYPE)
    sums = torch.zeros(num_classes, z.shape[1], dtype=STATS_DTYPE, device=z.device).index_add_(0, y, z)
    means = sums / counts.clamp_min(1.0)[:, None]
    centred = z - means[y]
    scatter = symmetrize(centred.T @ centred)
    return ClassStats(counts=counts, means=means, scatter=scatter)


def stack_class_stats(parts: list[ClassStats], who: str) -> tuple[Tensor, Tensor]:
    """Counts (K, C) and means (K, C, d) of K statistics of one shape (ValueError naming ``who``
    when there are none or their shapes differ)."""
    if not parts:
        raise ValueError(f"{who}: need at least one ClassStats")
    shape = (parts[0].num_classes, parts[0].dim)
    for p in parts:
        if (p.num_classes, p.dim) != shape:
            raise ValueError(f"{who}: shapes differ: {(p.num_classes, p.dim)} vs {shape}")
    return torch.stack([p.counts for p in parts]), torch.stack([p.means for p in parts])


def merge(parts: list[ClassStats]) -> ClassStats:
    """Statistics of the union of disjoint data sets from the statistics of each part.

    Exact (up to float64 round-off), whatever the split into batches or clients:
        n_c   = sum_k n_kc
        mu_c  = sum_k n_kc mu_kc / n_c                 (0 when n_c = 0)
        S     = sum_k S_k + sum_k sum_c n_kc (mu_kc - mu_c)(mu_kc - mu_c)^T

    Args:
        parts: K >= 1 ClassStats with the same C and d.

    Returns:
        ClassStats of the union.
    """
    counts_k, means_k = stack_class_stats(parts, "merge")
    counts = counts_k.sum(0)
    means = (counts_k[..., None] * means_k).sum(0) / counts.clamp_min(1.0)[:, None]
    # Deviations of part means from the union mean; absent (k, c) pairs carry weight 0.
    dev = means_k - means[None]
    between = torch.einsum("kc,kci,kcj->ij", counts_k, dev, dev)
    scatter = symmetrize(torch.stack([p.scatter for p in parts]).sum(0) + between)
    return ClassStats(counts=counts, means=means, scatter=scatter)


class StatsAccumulator:
    """Builds ClassStats from features that arrive in batches.

    Usage: `acc = StatsAccumulator(C, d); for z, y in batches: acc.update(z, y);
    stats = acc.finalize()`. Each batch is summarised exactly and merged into the running
    statistics with `merge` (Chan's pairwise update), so memory is O(C d + d^2) and the
    result does not depend on how the data is batched. Batches are moved to `device`
    (default CPU); pass the features' device to accumulate on an accelerator.
    """

    def __init__(self, num_classes: int, dim: int, device: torch.device | str | None = None) -> None:
        if num_classes < 1 or dim < 1:
            raise ValueError(f"StatsAccumulator: need num_classes >= 1 and dim >= 1, got {num_classes}, {dim}")
        self.num_classes = num_classes
        self.dim = dim
        self._stats = ClassStats.empty(num_classes, dim, device=device)

    def update(self, z: Tensor, y: Tensor) -> None:
        """Add a batch: z (B, d) features (any float dtype), y (B,) integer labels."""
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"update: expected features (B, {self.dim}), got {tuple(z.shape)}")
        if z.shape[0] == 0:
            return
        batch = batch_stats(z.to(self._stats.means.device), y.to(self._stats.means.device), self.num_classes)
        self._stats = merge([self._stats, batch])

    def finalize(self) -> ClassStats:
        """The statistics of every batch seen so far (the accumulator stays usable)."""
        return self._stats


def class_stats(z: Tensor, y: Tensor, num_classes: int) -> ClassStats:
    """ClassStats of a whole set at once: z (n, d), y (n,). Same as one accumulator update."""
    return batch_stats(z, y, num_classes)


def tied_covariance(stats: ClassStats) -> Tensor:
    """Tied within-class covariance Sigma_hat = S / max(n - C_present, 1), (d, d) float64.

    Spec §1. A single sample or all samples equal gives the zero matrix (never NaN);
    follow with `shrink` and a global prior to obtain a positive-definite matrix.
    """
    dof = max(stats.total - stats.num_present, 1.0)
    return symmetrize(stats.scatter / dof)


def shrink(cov: Tensor, eps: float) -> Tensor:
    """Symmetrise, then shrink towards the scaled identity (spec §1):

        Sigma <- (1 - eps) Sigma + eps * tr(Sigma) / d * I

    Args:
        cov: (..., d, d) covariance(s).
        eps: shrinkage in [0, 1]. eps > 0 makes any PSD matrix with positive trace
            positive definite; the trace is preserved.

    Returns:
        (..., d, d) float64.
    """
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"shrink: eps must lie in [0, 1], got {eps}")
    cov = symmetrize(cov.to(STATS_DTYPE))
    d = cov.shape[-1]
    target = (batch_trace(cov) / d)[..., None, None] * eye_like(cov)
    return (1.0 - eps) * cov + eps * target
