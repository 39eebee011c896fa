"""Local-level fusion (spec §5) and pFedFDA interpolation."""

from __future__ import annotations

import pytest
import torch

from pfedkit.stats import (
    ClassStats,
    GaussianHead,
    GlobalPrior,
    StudentTHead,
    class_stats,
    fit_generator,
    interpolate,
    kalman_gain,
    local_fusion,
    shrink,
    tied_covariance,
)

F64 = torch.float64
FORMS = ["full", "diag", "scalar"]


def spd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=F64)


def make_prior(spread: torch.Tensor, cov: torch.Tensor, seed: int = 0) -> GlobalPrior:
    c, d = spread.shape[0], spread.shape[1]
    g = torch.Generator().manual_seed(seed)
    counts = torch.arange(1, c + 1, dtype=F64) * 10
    return GlobalPrior(
        means=torch.randn(c, d, generator=g, dtype=F64),
        cov=cov,
        spread=spread,
        class_prior=counts / counts.sum(),
        num_clients=torch.full((c,), 3.0, dtype=F64),
        class_counts=counts,
        dof=torch.tensor(100.0, dtype=F64),
    )


def make_local(counts: list[float], local_cov: torch.Tensor, seed: int = 1) -> ClassStats:
    """Stats whose tied covariance is exactly local_cov."""
    counts_t = torch.tensor(counts, dtype=F64)
    means = 3.0 * torch.randn(len(counts), local_cov.shape[0], generator=torch.Generator().manual_seed(seed), dtype=F64)
    means = means * (counts_t > 0)[:, None]
    dof = counts_t.sum() - (counts_t > 0).sum()
    return ClassStats(counts_t, means, local_cov * dof)


def test_gain_zero_gives_global_mean_and_one_gives_local_mean() -> None:
    d = 4
    prior = make_prior(torch.stack([spd(d, i) for i in range(3)]), spd(d, 9))
    local = make_local([12.0, 0.0, 7.0], spd(d, 10))
    g0 = local_fusion(local, prior, fixed_gain=0.0)
    torch.testing.assert_close(g0.means, prior.means)
    g1 = local_fusion(local, prior, fixed_gain=1.0)
    torch.testing.assert_close(g1.means[[0, 2]], local.means[[0, 2]])
    torch.testing.assert_close(g1.means[1], prior.means[1])  # a class the client lacks
    assert g1.gain.tolist() == [1.0, 0.0, 1.0]


@pytest.mark.parametrize("form", FORMS)
def test_class_the_client_lacks_gets_the_global_mean(form: str) -> None:
    d = 3
    prior = make_prior(torch.stack([spd(d, i) for i in range(4)]), spd(d, 9))
    local = make_local([0.0, 5.0, 0.0, 40.0], spd(d, 11))
    personal = local_fusion(local, prior, gain_form=form, eps=0.0)
    torch.testing.assert_close(personal.means[[0, 2]], prior.means[[0, 2]])
    assert personal.gain[0] == 0 and personal.gain[2] == 0
    assert not torch.allclose(personal.means[3], prior.means[3])


def test_full_gain_is_the_gaussian_posterior_mean() -> None:
    # Prior N(mu_g, P), likelihood N(mu_hat; mu, R = Sigma_hat / n): posterior mean
    # (P^-1 + R^-1)^-1 (P^-1 mu_g + R^-1 mu_hat), posterior covariance (I - K) P.
    d = 5
    spread = torch.stack([spd(d, 1), spd(d, 2)])
    sigma_hat = spd(d, 3)
    prior = make_prior(spread, spd(d, 4))
    local = make_local([8.0, 30.0], sigma_hat)
    personal = local_fusion(local, prior, gain_form="full", eps=0.0)
    for c, n in enumerate([8.0, 30.0]):
        pi, ri = torch.linalg.inv(spread[c]), torch.linalg.inv(sigma_hat / n)
        post = torch.linalg.solve(pi + ri, pi @ prior.means[c] + ri @ local.means[c])
        torch.testing.assert_close(personal.means[c], post)
        torch.testing.assert_close(personal.mean_uncertainty[c], torch.trace(torch.linalg.inv(pi + ri)))


@pytest.mark.parametrize("form", FORMS)
def test_equal_covariances_give_precision_weighted_average(form: str) -> None:
    d, alpha, s, n = 4, 0.6, 2.0, 5.0
    beta = s / n  # R = Sigma_hat / n = beta I
    prior = make_prior((alpha * torch.eye(d, dtype=F64))[None], spd(d, 3))
    local = make_local([n], s * torch.eye(d, dtype=F64))
    personal = local_fusion(local, prior, gain_form=form, eps=0.0)
    expected = (beta * prior.means[0] + alpha * local.means[0]) / (alpha + beta)
    torch.testing.assert_close(personal.means[0], expected)
    torch.testing.assert_close(float(personal.gain[0]), alpha / (alpha + beta))
    # Same matrix up to scale (full form): P = alpha A, R = beta A -> gain alpha / (alpha + beta).
    a = spd(d, 5)
    prior_a = make_prior((alpha * a)[None], spd(d, 3))
    local_a = make_local([n], s * a)
    full = local_fusion(local_a, prior_a, gain_form="full", eps=0.0)
    expected_a = (beta * prior_a.means[0] + alpha * local_a.means[0]) / (alpha + beta)
    torch.testing.assert_close(full.means[0], expected_a)


def test_diag_and_scalar_reduce_to_full_when_isotropic() -> None:
    d = 6
    spread = torch.stack([a * torch.eye(d, dtype=F64) for a in (0.1, 1.0, 7.0)])
    prior = make_prior(spread, spd(d, 0))
    local = make_local([3.0, 20.0, 1.0], 1.7 * torch.eye(d, dtype=F64))
    full = local_fusion(local, prior, gain_form="full", eps=0.0)
    for form in ("diag", "scalar"):
        other = local_fusion(local, prior, gain_form=form, eps=0.0)
        torch.testing.assert_close(other.means, full.means)
        torch.testing.assert_close(other.gain, full.gain)
        torch.testing.assert_close(other.mean_uncertainty, full.mean_uncertainty)
    # diag equals full whenever both P and R are diagonal.
    diag_p = torch.diag_embed(torch.rand(3, d, generator=torch.Generator().manual_seed(0), dtype=F64) + 0.1)
    diag_r = torch.diag_embed(torch.rand(3, d, generator=torch.Generator().manual_seed(1), dtype=F64) + 0.1)
    diag_gain = torch.diag_embed(kalman_gain(diag_p, diag_r, "diag"))
    torch.testing.assert_close(diag_gain, kalman_gain(diag_p, diag_r, "full"))
    # ... and the forms differ for anisotropic covariances (the flag matters).
    aniso_local = make_local([3.0, 20.0, 1.0], spd(d, 4))
    aniso_prior = make_prior(torch.stack([spd(d, i) for i in range(3)]), spd(d, 0))
    aniso_scalar = local_fusion(aniso_local, aniso_prior, gain_form="scalar")
    aniso_full = local_fusion(aniso_local, aniso_prior, gain_form="full")
    assert not torch.allclose(aniso_scalar.means, aniso_full.means)


def test_gain_leans_local_with_many_samples_and_global_with_few() -> None:
    d = 3
    prior = make_prior(torch.stack([spd(d, 1), spd(d, 1)]), spd(d, 2))
    local = make_local([2.0, 5000.0], spd(d, 3))
    personal = local_fusion(local, prior, gain_form="full")
    assert 0.0 < personal.gain[0] < personal.gain[1] < 1.0
    assert personal.gain[1] > 0.99


def test_covariance_and_class_prior_formulas() -> None:
    d, nu0, a0, eps = 3, 20.0, 4.0, 0.05
    prior = make_prior(torch.stack([spd(d, i) for i in range(3)]), spd(d, 7))
    local = make_local([10.0, 0.0, 30.0], spd(d, 8))
    personal = local_fusion(local, prior, nu0=nu0, a0=a0, eps=eps)
    kappa = 40.0 / (40.0 + nu0)
    expected_cov = kappa * shrink(tied_covariance(local), eps) + (1 - kappa) * prior.cov
    torch.testing.assert_close(personal.cov, expected_cov)
    torch.testing.assert_close(float(personal.kappa), kappa)
    expected_pi = (local.counts + a0 * prior.class_prior) / (40.0 + a0)
    torch.testing.assert_close(personal.class_prior, expected_pi)
    torch.testing.assert_close(personal.class_prior.sum(), torch.tensor(1.0, dtype=F64))


@pytest.mark.parametrize("kappa", [0.0, 0.3, 1.0])
def test_a_given_kappa_replaces_the_pseudo_count(kappa: float) -> None:
    d, eps = 3, 0.05
    prior = make_prior(torch.stack([spd(d, i) for i in range(3)]), spd(d, 7))
    local = make_local([10.0, 0.0, 30.0], spd(d, 8))
    personal = local_fusion(local, prior, nu0=20.0, eps=eps, kappa=kappa)
    expected_cov = kappa * shrink(tied_covariance(local), eps) + (1 - kappa) * prior.cov
    torch.testing.assert_close(personal.cov, expected_cov)
    torch.testing.assert_close(float(personal.kappa), kappa)
    torch.testing.assert_close(personal.means, local_fusion(local, prior, nu0=20.0, eps=eps).means)
    with pytest.raises(ValueError, match="kappa must lie in"):
        local_fusion(local, prior, kappa=1.5)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("noise_cov", ["local", "fused"])
def test_single_sample_and_single_class_clients_have_no_nan(form: str, noise_cov: str) -> None:
    d, c = 5, 3
    g = torch.Generator().manual_seed(0)
    uploads = [
        class_stats(torch.randn(20, d, generator=g), torch.randint(0, c, (20,), generator=g), c) for _ in range(3)
    ]
    prior = fit_generator(uploads).prior
    clients = [
        class_stats(torch.randn(1, d, generator=g), torch.tensor([2]), c),  # one sample
        class_stats(torch.randn(9, d, generator=g), torch.zeros(9, dtype=torch.long), c),  # one class
        class_stats(torch.ones(4, d), torch.tensor([1, 1, 1, 1]), c),  # identical samples: scatter 0
    ]
    for local in clients:
        personal = local_fusion(local, prior, gain_form=form, noise_cov=noise_cov)
        for t in personal.to_payload().values():
            assert torch.isfinite(t).all()
        assert torch.linalg.eigvalsh(personal.cov).min() > 0
        z = torch.randn(7, d, generator=g)
        for head in (GaussianHead.from_personal(personal), StudentTHead.from_personal(personal, nu0=10.0)):
            logp = head.predict_log_proba(z)
            assert torch.isfinite(logp).all()
            torch.testing.assert_close(logp.exp().sum(1), torch.ones(7, dtype=logp.dtype))
    # A single-sample client whose prior has no spread for its class also stays finite.
    flat = GlobalPrior(**{**prior.__dict__, "spread": torch.zeros_like(prior.spread)})
    personal = local_fusion(clients[0], flat, gain_form=form, noise_cov=noise_cov)
    assert all(torch.isfinite(t).all() for t in personal.to_payload().values())
    torch.testing.assert_close(personal.means, flat.means)


def test_interpolate() -> None:
    d = 3
    lm, gm = torch.randn(4, d, dtype=F64), torch.randn(4, d, dtype=F64)
    lc, gc = spd(d, 0), spd(d, 1)
    present = torch.tensor([True, True, False, True])
    m0, c0 = interpolate(lm, lc, gm, gc, 0.0)
    torch.testing.assert_close(m0, gm)
    torch.testing.assert_close(c0, gc)
    m1, c1 = interpolate(lm, lc, gm, gc, 1.0, present=present)
    torch.testing.assert_close(m1[present], lm[present])
    torch.testing.assert_close(m1[2], gm[2])
    torch.testing.assert_close(c1, lc)
    mh, ch = interpolate(lm, lc, gm, gc, 0.25)
    torch.testing.assert_close(mh, 0.25 * lm + 0.75 * gm)
    torch.testing.assert_close(ch, 0.25 * lc + 0.75 * gc)
    with pytest.raises(ValueError):
        interpolate(lm, lc, gm, gc, 1.5)


@pytest.mark.parametrize("form", FORMS)
def test_class_unknown_to_the_prior_takes_the_local_mean(form: str) -> None:
    d = 3
    prior = make_prior(torch.stack([spd(d, i) for i in range(2)]), spd(d, 9))
    prior = GlobalPrior(**{**prior.__dict__, "num_clients": torch.tensor([3.0, 0.0], dtype=F64)})
    local = make_local([10.0, 6.0], spd(d, 10))
    personal = local_fusion(local, prior, gain_form=form)
    torch.testing.assert_close(personal.means[1], local.means[1])
    assert float(personal.gain[1]) == 1.0
