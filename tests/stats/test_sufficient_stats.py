"""Sufficient statistics: exact under any batch/client split, float64, no NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pfedkit.stats import ClassStats, StatsAccumulator, class_stats, merge, shrink, tied_covariance


def direct_stats(z: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference: counts, means, tied scatter of the concatenated data, by definition."""
    d = z.shape[1]
    counts = np.zeros(num_classes)
    means = np.zeros((num_classes, d))
    scatter = np.zeros((d, d))
    for c in range(num_classes):
        zc = z[y == c]
        counts[c] = len(zc)
        if len(zc):
            means[c] = zc.mean(0)
            dev = zc - means[c]
            scatter += dev.T @ dev
    return counts, means, scatter


def random_split(n: int, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Split range(n) into `parts` contiguous chunks of random sizes (empty chunks allowed)."""
    cuts = np.sort(rng.integers(0, n + 1, size=parts - 1))
    return np.split(rng.permutation(n), cuts)


def assert_stats_close(stats: ClassStats, ref: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    counts, means, scatter = ref
    np.testing.assert_array_equal(stats.counts.numpy(), counts)
    np.testing.assert_allclose(stats.means.numpy(), means, rtol=1e-10, atol=1e-8)
    scale = max(np.abs(scatter).max(), 1.0)
    np.testing.assert_allclose(stats.scatter.numpy() / scale, scatter / scale, rtol=0, atol=1e-10)


@pytest.mark.parametrize("d", [1, 3, 17])
@pytest.mark.parametrize("seed", [0, 1])
def test_stats_equal_concatenated_data_for_any_split(d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes, n = 5, 400
    # Class 4 never occurs; a large offset makes a naive sum-of-squares formula lose digits.
    y = rng.integers(0, 4, size=n)
    z = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + 1.0e4 + y[:, None] * 2.0
    ref = direct_stats(z, y, num_classes)
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)

    assert_stats_close(class_stats(zt, yt, num_classes), ref)

    client_stats = []
    for idx in random_split(n, parts=6, rng=rng):
        acc = StatsAccumulator(num_classes, d)
        for batch in random_split(len(idx), parts=int(rng.integers(1, 8)), rng=rng):
            acc.update(zt[idx[batch]], yt[idx[batch]])
        client_stats.append(acc.finalize())
    assert_stats_close(merge(client_stats), ref)
    # Order of merging does not matter either.
    assert_stats_close(merge(client_stats[::-1]), ref)

    # Batches of one sample, in random order, over a random subset.
    sub = rng.permutation(n)[:50]
    acc_sub = StatsAccumulator(num_classes, d)
    for i in sub:
        acc_sub.update(zt[i : i + 1], yt[i : i + 1])
    assert_stats_close(acc_sub.finalize(), direct_stats(z[sub], y[sub], num_classes))


def test_absent_class_has_zero_mean_and_float64() -> None:
    z = torch.randn(30, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    y = torch.tensor([0, 2] * 15)
    stats = class_stats(z, y, num_classes=3)
    assert stats.counts.dtype == stats.means.dtype == stats.scatter.dtype == torch.float64
    assert stats.counts.tolist() == [15.0, 0.0, 15.0]
    assert torch.equal(stats.means[1], torch.zeros(4, dtype=torch.float64))
    assert stats.num_present == 2
    # Merging with a client that holds only class 1 leaves classes 0 and 2 unchanged.
    other = class_stats(torch.ones(3, 4), torch.tensor([1, 1, 1]), num_classes=3)
    merged = merge([stats, other])
    torch.testing.assert_close(merged.means[[0, 2]], stats.means[[0, 2]])
    torch.testing.assert_close(merged.scatter, stats.scatter)


def test_tied_covariance_divides_by_n_minus_present_classes() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (40,), generator=g)
    stats = class_stats(z, y, num_classes=4)
    torch.testing.assert_close(tied_covariance(stats), stats.scatter / (40 - 2))


@pytest.mark.parametrize("d,n", [(6, 3), (10, 50)])
def test_shrink_keeps_symmetric_positive_definite_and_trace(d: int, n: int) -> None:
    g = torch.Generator().manual_seed(d)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    cov = a.T @ a / n  # rank min(n, d): singular when n < d
    cov = cov + 1e-9 * torch.randn(d, d, generator=g, dtype=torch.float64)  # slightly asymmetric
    for eps in (1e-3, 0.1, 1.0):
        s = shrink(cov, eps)
        assert torch.equal(s, s.T)
        assert torch.linalg.eigvalsh(s).min() > 0
        torch.testing.assert_close(torch.trace(s), torch.trace(cov))
    torch.testing.assert_close(shrink(cov, 1.0), torch.trace(cov) / d * torch.eye(d, dtype=torch.float64))
    batched = shrink(torch.stack([cov, 2 * cov]), 0.1)
    torch.testing.assert_close(batched[1], shrink(2 * cov, 0.1))
    with pytest.raises(ValueError):
        shrink(cov, 1.5)


def test_single_sample_and_single_class_give_no_nan() -> None:
    one = class_stats(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([1]), num_classes=3)
    single_class = class_stats(torch.randn(5, 3), torch.zeros(5, dtype=torch.long), num_classes=3)
    for stats in (one, single_class, ClassStats.empty(3, 3)):
        cov = shrink(tied_covariance(stats), 0.01)
        for t in (stats.counts, stats.means, stats.scatter, cov):
            assert torch.isfinite(t).all()
    assert torch.equal(tied_covariance(one), torch.zeros(3, 3, dtype=torch.float64))


def test_payload_round_trip_and_validation() -> None:
    stats = class_stats(torch.randn(8, 2), torch.tensor([0, 1, 1, 0, 1, 1, 0, 0]), num_classes=2)
    payload = stats.to_payload(prefix="gm.")
    assert set(payload) == {"gm.counts", "gm.means", "gm.scatter"}
    back = ClassStats.from_payload(payload, prefix="gm.")
    for a, b in ((back.counts, stats.counts), (back.means, stats.means), (back.scatter, stats.scatter)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        class_stats(torch.randn(2, 2), torch.tensor([0, 5]), num_classes=2)
    with pytest.raises(ValueError):
        class_stats(torch.randn(2, 2), torch.tensor([0.0, 1.0]), num_classes=2)
    with pytest.raises(ValueError):
        ClassStats(torch.zeros(2), torch.zeros(3, 2), torch.zeros(2, 2))
