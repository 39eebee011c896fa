"""Class statistics released with differential privacy: the Gaussian mechanism on the counts,
sums and second moments of clipped feature vectors, and the post-processing that turns the noisy
moments into valid `ClassStats` (non-negative counts, a positive-definite scatter).

Mechanism (one record = one labelled feature vector z with class y; add/remove adjacency):

    z_bar = z * min(1, C_f / ||z||)                    (clipped, ||z_bar|| <= C_f)
    n_c  = #{i: y_i = c}           + N(0, s_n^2)       (C,)
    s_c  = sum_{y_i = c} z_bar_i    + N(0, s_s^2 I)    (C, d)
    M    = sum_i z_bar_i z_bar_i^T  + E, E symmetric, its upper triangle iid N(0, s_m^2)   (d, d)

One record moves n by e_y (L2 norm 1), s by z_bar in row y (<= C_f) and the upper triangle of
M by that of z_bar z_bar^T (<= ||z_bar||^2 <= C_f^2). With s_n = sqrt(3) sigma,
s_s = sqrt(3) sigma C_f and s_m = sqrt(3) sigma C_f^2 each part gets a third of the squared
sensitivity: the three together are one Gaussian mechanism with noise multiplier sigma, which
is how `pfedkit.stats.privacy_accounting` counts a release (sample rate 1, one step).

Everything after the noise is post-processing (no further privacy cost): see `noisy_moments_to_stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pfedkit.stats._linalg import symmetrize
from pfedkit.stats.sufficient import STATS_DTYPE, ClassStats

PRESENT_SIGMAS = 3.0
"""A class counts as present in a release only when its noisy count reaches this many count-noise
standard deviations (and at least 1): below that its noisy mean, sum / count, is mostly noise."""

EIGEN_FLOOR = 1e-3
"""Eigenvalues of the released scatter are raised to at least this fraction of the mean absolute
eigenvalue (and a tiny absolute floor), which makes it positive definite."""


@dataclass(frozen=True)
class StatsNoise:
    """Noise standard deviations of one release (see the module docstring).

    Attributes:
        count: s_n, per class count.
        sums: s_s, per coordinate of each class sum.
        moment: s_m, per upper-triangle entry of the second moment.
    """

    count: float
    sums: float
    moment: float

    @classmethod
    def calibrated(cls, noise_multiplier: float, clip: float) -> StatsNoise:
        """The noise that makes one release a Gaussian mechanism with ``noise_multiplier`` when
        every feature vector is clipped to norm ``clip``."""
        if noise_multiplier < 0 or clip <= 0:
            raise ValueError(f"StatsNoise: need noise_multiplier >= 0 and clip > 0, got {noise_multiplier}, {clip}")
        share = math.sqrt(3.0) * noise_multiplier
        return cls(count=share, sums=share * clip, moment=share * clip * clip)


def clip_rows(z: Tensor, bound: float) -> Tensor:
    """Each row of z (n, d) scaled down to L2 norm at most ``bound`` (rows already inside stay)."""
    norms = z.norm(dim=1, keepdim=True)
    return z * (bound / norms.clamp_min(bound)).clamp(max=1.0)


def noisy_class_stats(z: Tensor, y: Tensor, num_classes: int, clip: float, noise_multiplier: float,
                      generator: torch.Generator) -> ClassStats:
    """The released statistics of one client: clip, sum, add Gaussian noise, post-process.

    Args:
        z: (n, d) features (any float dtype and device; n may be 0: the release is then noise).
        y: (n,) integer labels in [0, num_classes).
        clip: C_f, the feature norm bound.
        noise_multiplier: sigma of the release as a whole (0: exact moments, still clipped).
        generator: the noise's randomness (a CPU generator; the noise is drawn on the CPU).

    Returns:
        ClassStats (float64, on the CPU) whose scatter is positive definite.
    """
    z = clip_rows(z.detach().to("cpu", STATS_DTYPE), clip)
    y = y.to("cpu").long()
    d = z.shape[1]
    counts = torch.bincount(y, minlength=num_classes).to(STATS_DTYPE)
    sums = torch.zeros(num_classes, d, dtype=STATS_DTYPE).index_add_(0, y, z)
    moment = z.T @ z
    noise = StatsNoise.calibrated(noise_multiplier, clip)
    counts = counts + noise.count * torch.randn(num_classes, generator=generator, dtype=STATS_DTYPE)
    sums = sums + noise.sums * torch.randn(num_classes, d, generator=generator, dtype=STATS_DTYPE)
    upper = torch.triu(torch.randn(d, d, generator=generator, dtype=STATS_DTYPE))
    moment = moment + noise.moment * (upper + torch.triu(upper, 1).T)
    return noisy_moments_to_stats(counts, sums, moment, noise)


def noisy_moments_to_stats(counts: Tensor, sums: Tensor, moment: Tensor, noise: StatsNoise) -> ClassStats:
    """Post-processing of a release into `ClassStats` (uses nothing but the released values).

    * classes whose noisy count is below ``max(1, PRESENT_SIGMAS * noise.count)`` are absent
      (count 0, mean 0); the others keep their noisy count and get mean = sum / count;
    * scatter = M - sum over present classes of (s_c s_c^T - s_s^2 I) / n_c (the s_s^2 term
      removes the bias the noise of s_c puts into s_c s_c^T), then `nearest_positive_definite`.

    Args:
        counts: (C,), sums: (C, d), moment: (d, d) noisy moments (float64).
        noise: the noise they carry.
    """
    counts, sums, moment = (t.to(STATS_DTYPE) for t in (counts, sums, moment))
    present = counts >= max(1.0, PRESENT_SIGMAS * noise.count)
    n = torch.where(present, counts, torch.zeros_like(counts))
    means = torch.where(present[:, None], sums / n.clamp_min(1.0)[:, None], torch.zeros_like(sums))
    d = sums.shape[1]
    outer = torch.einsum("ci,cj->cij", sums, sums) - noise.sums ** 2 * torch.eye(d, dtype=STATS_DTYPE)
    between = (outer[present] / n[present][:, None, None]).sum(0)
    scatter = nearest_positive_definite(symmetrize(moment) - between)
    return ClassStats(counts=n, means=means, scatter=scatter)


def nearest_positive_definite(a: Tensor, floor: float = EIGEN_FLOOR) -> Tensor:
    """Symmetric a (d, d) with its eigenvalues raised to at least ``floor`` x their mean absolute
    value (or 1e-12 when that is 0): positive definite, equal to a where a already is that well
    conditioned. float64."""
    a = symmetrize(a.to(STATS_DTYPE))
    values, vectors = torch.linalg.eigh(a)
    scale = float(values.abs().mean()) if values.numel() else 0.0
    values = values.clamp_min(max(floor * scale, 1e-12))
    return symmetrize((vectors * values) @ vectors.T)
