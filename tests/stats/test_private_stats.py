"""Noised class statistics: clipping, the noise scale, exactness without noise, and valid
(positive definite) covariances after noise, down to pFedGM's server-side prior."""

from __future__ import annotations

import math

import pytest
import torch

from pfedkit.stats import fit_generator
from pfedkit.stats.private_stats import (
    StatsNoise,
    clip_rows,
    nearest_positive_definite,
    noisy_class_stats,
    noisy_moments_to_stats,
)
from pfedkit.stats.sufficient import class_stats, tied_covariance

C, D = 4, 6


def features(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    z = torch.randn(n, D, generator=g, dtype=torch.float64) * 0.3 + y[:, None].double() * 0.2
    return z, y


def test_clip_rows_bounds_long_rows_and_keeps_short_ones() -> None:
    z = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    out = clip_rows(z, 1.0)
    torch.testing.assert_close(out[0], torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(out[1:], z[1:])


def test_without_noise_the_release_is_the_exact_statistics() -> None:
    z, y = features(60)
    exact = class_stats(z, y, C)
    released = noisy_class_stats(z, y, C, clip=100.0, noise_multiplier=0.0, generator=torch.Generator())
    torch.testing.assert_close(released.counts, exact.counts)
    torch.testing.assert_close(released.means, exact.means)
    torch.testing.assert_close(released.scatter, exact.scatter)


def test_noise_has_the_calibrated_scale() -> None:
    """With no data, the release is pure noise: counts ~ N(0, 3 sigma^2), sums ~ N(0, 3 sigma^2 C_f^2),
    the second moment's entries ~ N(0, 3 sigma^2 C_f^4) (one Gaussian mechanism with multiplier sigma)."""
    sigma, clip = 2.0, 1.5
    noise = StatsNoise.calibrated(sigma, clip)
    assert (noise.count, noise.sums, noise.moment) == pytest.approx(
        (math.sqrt(3) * sigma, math.sqrt(3) * sigma * clip, math.sqrt(3) * sigma * clip ** 2))
    g = torch.Generator().manual_seed(0)
    draws = [torch.randn(C, generator=g, dtype=torch.float64) * noise.count for _ in range(2000)]
    assert float(torch.stack(draws).std()) == pytest.approx(noise.count, rel=0.05)


def test_sensitivity_of_one_record_is_within_the_calibration() -> None:
    """Adding one clipped record moves (counts, sums, upper triangle of M), each divided by its
    noise std, by at most 1 / sigma in L2 norm: the release is one mechanism with multiplier sigma."""
    sigma, clip = 1.3, 2.0
    noise = StatsNoise.calibrated(sigma, clip)
    z = clip_rows(torch.randn(1, D, dtype=torch.float64) * 10, clip)[0]
    moved = torch.cat([torch.ones(1) / noise.count, z / noise.sums,
                       torch.outer(z, z)[torch.triu_indices(D, D).unbind()] / noise.moment])
    assert float(moved.norm()) <= 1.0 / sigma + 1e-12


@pytest.mark.parametrize("sigma", [0.5, 3.0, 20.0])
def test_noised_covariance_is_positive_definite(sigma: float) -> None:
    """Even when the noise swamps the scatter (large sigma, few records), the released scatter and
    the tied covariance are positive definite."""
    z, y = features(24, seed=1)
    stats = noisy_class_stats(z, y, C, clip=1.0, noise_multiplier=sigma, generator=torch.Generator().manual_seed(2))
    assert float(torch.linalg.eigvalsh(stats.scatter).min()) > 0
    cov = tied_covariance(stats)
    assert float(torch.linalg.eigvalsh(cov).min()) > 0
    torch.linalg.cholesky(cov)
    assert bool((stats.counts >= 0).all())
    absent = stats.counts == 0
    assert bool((stats.means[absent] == 0).all())


def test_pfedgm_prior_from_noised_uploads_is_positive_definite() -> None:
    """pFedGM's server fits its generator to several noised uploads: the pooled covariance is
    positive definite and every between-client spread P_c positive semi-definite."""
    uploads = []
    for k in range(5):
        z, y = features(30, seed=10 + k)
        uploads.append(noisy_class_stats(z, y, C, clip=1.0, noise_multiplier=4.0,
                                         generator=torch.Generator().manual_seed(k)))
    prior = fit_generator(uploads, tau=1.0, eps=0.0).prior
    assert float(torch.linalg.eigvalsh(prior.cov).min()) > 0
    assert float(torch.linalg.eigvalsh(prior.spread).min()) > -1e-9


def test_rare_classes_are_dropped_and_the_noise_bias_is_removed() -> None:
    """A class whose noisy count is below 3 count-noise stds is absent; the scatter subtracts
    (s s^T - s_s^2 I) / n, the s_s^2 I / n undoing the bias noisy sums put into s s^T: with exact
    sums and a second moment short of exactly that term, it recovers the exact scatter."""
    z, y = features(80)
    exact = class_stats(z, y, C)
    noise = StatsNoise(count=5.0, sums=0.5, moment=1.0)
    counts = exact.counts.clone()
    counts[3] = 14.0  # below 3 * 5
    sums = exact.means * exact.counts[:, None]
    moment = z.T @ z - sum(noise.sums ** 2 * torch.eye(D, dtype=torch.float64) / counts[c] for c in range(3))
    stats = noisy_moments_to_stats(counts, sums, moment, noise)
    assert stats.counts[3] == 0 and bool((stats.means[3] == 0).all())
    kept = z[y < 3]
    expected = class_stats(kept, y[y < 3], C).scatter + z[y == 3].T @ z[y == 3]  # the absent class stays uncentred
    torch.testing.assert_close(stats.scatter, nearest_positive_definite(expected))


def test_nearest_positive_definite_keeps_good_matrices() -> None:
    a = torch.randn(D, D, dtype=torch.float64)
    good = a @ a.T + torch.eye(D, dtype=torch.float64)
    torch.testing.assert_close(nearest_positive_definite(good), good)
    bad = torch.diag(torch.tensor([2.0, -1.0, 0.5, 0.0, -3.0, 1.0], dtype=torch.float64))
    assert float(torch.linalg.eigvalsh(nearest_positive_definite(bad)).min()) > 0
