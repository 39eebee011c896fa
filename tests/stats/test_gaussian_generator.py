"""Gaussian generator: re-sampling weights, moment-matched prior, and its samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from pfedkit.stats import ClassStats, GlobalPrior, fit_generator, resampling_weights, sample

C, D = 3, 3


def make_uploads() -> list[ClassStats]:
    """Four clients; class 2 is held by nobody; client means far apart so P_c matters."""
    g = torch.Generator().manual_seed(7)
    counts = torch.tensor([[50.0, 10.0, 0.0], [5.0, 0.0, 0.0], [20.0, 40.0, 0.0], [0.0, 30.0, 0.0]])
    uploads = []
    for k in range(4):
        means = 4.0 * torch.randn(C, D, generator=g, dtype=torch.float64) * (counts[k] > 0)[:, None]
        a = torch.randn(D, D, generator=g, dtype=torch.float64)
        dof = counts[k].sum() - (counts[k] > 0).sum()
        uploads.append(ClassStats(counts[k], means, (a @ a.T + torch.eye(D, dtype=torch.float64)) * dof))
    return uploads


def test_resampling_weights() -> None:
    counts = torch.tensor([[4.0, 0.0, 0.0], [16.0, 3.0, 0.0], [0.0, 1.0, 0.0]])
    w1 = resampling_weights(counts, tau=1.0)
    torch.testing.assert_close(w1[:, 0], torch.tensor([0.2, 0.8, 0.0], dtype=torch.float64))
    torch.testing.assert_close(w1[:, 1], torch.tensor([0.0, 0.75, 0.25], dtype=torch.float64))
    assert torch.equal(w1[:, 2], torch.zeros(3, dtype=torch.float64))
    w_half = resampling_weights(counts, tau=0.5)
    torch.testing.assert_close(w_half[:, 0], torch.tensor([2 / 6, 4 / 6, 0.0], dtype=torch.float64))
    w0 = resampling_weights(counts, tau=0.0)
    torch.testing.assert_close(w0[:, 1], torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError):
        resampling_weights(counts, tau=-1.0)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_prior_is_the_moment_matched_summary(tau: float) -> None:
    uploads = make_uploads()
    gen = fit_generator(uploads, tau=tau, eps=0.0)
    prior = gen.prior
    counts = np.stack([u.counts.numpy() for u in uploads])
    means = np.stack([u.means.numpy() for u in uploads])
    for c in range(C):
        held = counts[:, c] > 0
        if not held.any():
            assert prior.num_clients[c] == 0 and not prior.available[c]
            continue
        w = np.where(held, counts[:, c], 0.0) ** tau * held
        w = w / w.sum()
        mu = (w[:, None] * means[:, c]).sum(0)
        spread = sum(w[k] * np.outer(means[k, c] - mu, means[k, c] - mu) for k in range(4))
        np.testing.assert_allclose(prior.means[c].numpy(), mu, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(prior.spread[c].numpy(), spread, rtol=1e-10, atol=1e-12)
        assert prior.num_clients[c] == held.sum()
    dof = sum(counts[k].sum() - (counts[k] > 0).sum() for k in range(4))
    pooled = sum(u.scatter.numpy() for u in uploads) / dof
    np.testing.assert_allclose(prior.cov.numpy(), pooled, rtol=1e-12)
    assert float(prior.dof) == dof
    np.testing.assert_allclose(prior.class_prior.numpy(), counts.sum(0) / counts.sum())


def _check_moments(z: np.ndarray, mean: np.ndarray, cov: np.ndarray, wrong_cov: np.ndarray) -> None:
    """Sample mean and covariance agree with (mean, cov) within sampling error, and the
    same tolerance rejects `wrong_cov` (so the test has power)."""
    n, d = z.shape
    xbar = z.mean(0)
    stat = n * (xbar - mean) @ np.linalg.solve(cov, xbar - mean)  # ~ chi2(d) when the mean is right
    assert stat < sps.chi2.ppf(1 - 1e-6, d)
    dev = z - xbar
    prods = dev[:, :, None] * dev[:, None, :]  # (n, d, d); their mean is the sample covariance
    sample_cov = prods.mean(0)
    se = prods.std(0) / np.sqrt(n)  # standard error of each entry, from the samples' 4th moments
    assert np.all(np.abs(sample_cov - cov) < 6 * se)
    assert np.any(np.abs(sample_cov - wrong_cov) > 6 * se)


def test_generator_samples_have_moment_matched_mean_and_covariance() -> None:
    gen = fit_generator(make_uploads(), tau=1.0, eps=0.0)
    per_class = 20000
    z, y = sample(gen, per_class=per_class, generator=torch.Generator().manual_seed(0))
    assert z.dtype == torch.float32 and y.dtype == torch.int64
    assert z.shape == (2 * per_class, D)
    assert set(y.tolist()) == {0, 1}  # class 2: nobody holds it, so no samples
    prior = gen.prior
    for c in (0, 1):
        zc = z[y == c].double().numpy()
        total = (prior.cov + prior.spread[c]).numpy()
        _check_moments(zc, prior.means[c].numpy(), total, wrong_cov=prior.cov.numpy())


def test_prior_samples_have_the_same_moments_and_are_seeded() -> None:
    prior = fit_generator(make_uploads(), eps=0.0).prior
    z, y = sample(prior, per_class=20000, generator=torch.Generator().manual_seed(1))
    for c in (0, 1):
        total = (prior.cov + prior.spread[c]).numpy()
        _check_moments(z[y == c].double().numpy(), prior.means[c].numpy(), total, wrong_cov=prior.cov.numpy())
    z2, _ = sample(prior, per_class=20000, generator=torch.Generator().manual_seed(1))
    z3, _ = sample(prior, per_class=20000, generator=torch.Generator().manual_seed(2))
    assert torch.equal(z, z2) and not torch.equal(z, z3)
    empty_z, empty_y = sample(prior, per_class=0, generator=torch.Generator())
    assert empty_z.shape == (0, D) and empty_y.shape == (0,)


@pytest.mark.parametrize("form", ["full", "diag", "scalar"])
def test_prior_payload_round_trip(form: str) -> None:
    prior = fit_generator(make_uploads()).prior
    back = GlobalPrior.from_payload(prior.to_payload(prefix="p.", spread_form=form), prefix="p.")
    torch.testing.assert_close(back.means, prior.means)
    torch.testing.assert_close(back.cov, prior.cov)
    assert back.spread.shape == prior.spread.shape
    tr = lambda s: s.diagonal(dim1=-2, dim2=-1).sum(-1)  # noqa: E731
    torch.testing.assert_close(tr(back.spread), tr(prior.spread))
    if form == "full":
        torch.testing.assert_close(back.spread, prior.spread)
    if form == "diag":
        torch.testing.assert_close(back.spread.diagonal(dim1=-2, dim2=-1), prior.spread.diagonal(dim1=-2, dim2=-1))


def test_single_client_single_sample_generator_has_no_nan() -> None:
    one = ClassStats(torch.tensor([1.0, 0.0]), torch.tensor([[1.0, -1.0], [0.0, 0.0]]), torch.zeros(2, 2))
    gen = fit_generator([one], eps=0.1)
    prior = gen.prior
    for t in (prior.means, prior.cov, prior.spread, prior.class_prior):
        assert torch.isfinite(t).all()
    z, y = sample(gen, per_class=4, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(z).all() and y.tolist() == [0] * 4
