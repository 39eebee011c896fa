"""Student-t posterior predictive (Normal-inverse-Wishart) head."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import multivariate_t

from pfedkit.stats import ClassStats, GaussianHead, GlobalPrior, StudentTHead, class_stats, local_fusion, niw_posterior

F64 = torch.float64


def spd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=F64)


def test_niw_posterior_matches_conjugate_formulas_and_scipy_t() -> None:
    c, d, kappa0, nu0 = 3, 4, 2.0, 6.0
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0] * 5 + [2] * 9)
    z = torch.randn(14, d, generator=g, dtype=F64) + 3.0 * y[:, None]
    local = class_stats(z, y, c)
    m0, sigma_g = torch.randn(c, d, generator=g, dtype=F64), spd(d, 1)
    post = niw_posterior(local, m0, sigma_g, kappa0, nu0)
    # Class 1 is absent: posterior = prior.
    torch.testing.assert_close(post.loc[1], m0[1])
    assert float(post.kappa[1]) == kappa0
    # Present classes, by the textbook formulas.
    for cls in (0, 2):
        zc = z[y == cls]
        n = len(zc)
        torch.testing.assert_close(post.loc[cls], (kappa0 * m0[cls] + zc.sum(0)) / (kappa0 + n))
    psi = nu0 * sigma_g
    for cls in (0, 2):
        zc = z[y == cls]
        n, xbar = len(zc), zc.mean(0)
        shift = xbar - m0[cls]
        psi = psi + (zc - xbar).T @ (zc - xbar) + kappa0 * n / (kappa0 + n) * torch.outer(shift, shift)
    torch.testing.assert_close(post.psi, psi)
    assert float(post.nu) == nu0 + d + 1 + 14
    torch.testing.assert_close(post.mean_cov(), psi / (nu0 + 14))

    prior = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    head = post.predictive(prior)
    zq = torch.randn(20, d, generator=g, dtype=F64) * 3
    df = nu0 + 14 + 2
    ref = np.stack(
        [
            np.log(prior[k].item())
            + multivariate_t(
                loc=post.loc[k].numpy(),
                shape=(psi * (post.kappa[k] + 1) / (post.kappa[k] * df)).numpy(),
                df=df,
            ).logpdf(zq.numpy())
            for k in range(c)
        ],
        axis=1,
    )
    np.testing.assert_allclose(head.log_joint(zq).numpy(), ref, rtol=1e-9, atol=1e-9)
    ref_post = ref - np.logaddexp.reduce(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(head.predict_log_proba(zq).numpy(), ref_post, rtol=1e-9, atol=1e-9)


def _huge_and_small(n: float) -> float:
    """Max |log p_t - log p_gauss| for NIW with n samples per class vs the plug-in Gaussian."""
    c, d = 3, 4
    g = torch.Generator().manual_seed(5)
    means = 2.0 * torch.randn(c, d, generator=g, dtype=F64)
    sigma = spd(d, 6)
    counts = torch.full((c,), n, dtype=F64)
    local = ClassStats(counts, means, sigma * (counts.sum() - c))
    post = niw_posterior(local, torch.zeros(c, d, dtype=F64), spd(d, 7), kappa0=1.0, nu0=5.0)
    prior = torch.full((c,), 1 / c, dtype=F64)
    t_head = post.predictive(prior)
    gauss = GaussianHead.from_gaussians(means, sigma, class_prior=prior, dtype=F64)
    zq = means[torch.arange(40) % c] + 1.5 * torch.randn(40, d, generator=g, dtype=F64)
    return float((t_head.predict_log_proba(zq) - gauss.predict_log_proba(zq)).abs().max())


def test_student_t_approaches_plug_in_gaussian_for_huge_counts() -> None:
    assert _huge_and_small(1e7) < 1e-4
    assert _huge_and_small(3.0) > 1e-2  # the two predictives do differ for small counts


def test_from_personal_approaches_plug_in_for_huge_counts() -> None:
    c, d = 3, 4
    g = torch.Generator().manual_seed(8)
    spread = torch.stack([spd(d, 10 + i) for i in range(c)])
    prior = GlobalPrior(
        means=torch.randn(c, d, generator=g, dtype=F64), cov=spd(d, 20), spread=spread,
        class_prior=torch.full((c,), 1 / c, dtype=F64), num_clients=torch.full((c,), 4.0, dtype=F64),
        class_counts=torch.full((c,), 100.0, dtype=F64), dof=torch.tensor(300.0, dtype=F64),
    )
    zq = 2.0 * torch.randn(30, d, generator=g, dtype=F64)

    def gap(n: float) -> float:
        counts = torch.full((c,), n, dtype=F64)
        local = ClassStats(counts, 2 * torch.randn(c, d, generator=torch.Generator().manual_seed(9), dtype=F64),
                           spd(d, 21) * (counts.sum() - c))
        personal = local_fusion(local, prior, nu0=10.0)
        t = StudentTHead.from_personal(personal, nu0=10.0).predict_log_proba(zq)
        gauss = GaussianHead.from_personal(personal, dtype=F64).predict_log_proba(zq)
        return float((t - gauss).abs().max())

    assert gap(1e7) < 1e-4
    assert gap(2.0) > 1e-2


def test_from_personal_uses_the_documented_dof_and_scale() -> None:
    # dof = nu0 + n_k + 2; class scale = Sigma_k (nu0 + n_k) / dof * (1 + tr((I-K)P_c) / tr(Sigma_k)).
    c, d, nu0 = 2, 3, 4.0
    g = torch.Generator().manual_seed(11)
    prior = GlobalPrior(
        means=torch.randn(c, d, generator=g, dtype=F64), cov=spd(d, 30),
        spread=torch.stack([spd(d, 31), spd(d, 32)]), class_prior=torch.tensor([0.4, 0.6], dtype=F64),
        num_clients=torch.full((c,), 3.0, dtype=F64), class_counts=torch.full((c,), 50.0, dtype=F64),
        dof=torch.tensor(90.0, dtype=F64),
    )
    local = class_stats(torch.randn(7, d, generator=g, dtype=F64), torch.tensor([0, 0, 0, 1, 1, 1, 1]), c)
    personal = local_fusion(local, prior, nu0=nu0)
    head = StudentTHead.from_personal(personal, nu0=nu0)
    dof = nu0 + 7 + 2
    zq = torch.randn(10, d, generator=g, dtype=F64)
    tr_cov = torch.trace(personal.cov)
    ref = np.stack(
        [
            np.log(personal.class_prior[k].item())
            + multivariate_t(
                loc=personal.means[k].numpy(),
                shape=(personal.cov * (nu0 + 7) / dof * (1 + personal.mean_uncertainty[k] / tr_cov)).numpy(),
                df=dof,
            ).logpdf(zq.numpy())
            for k in range(c)
        ],
        axis=1,
    )
    np.testing.assert_allclose(head.log_joint(zq).numpy(), ref, rtol=1e-9, atol=1e-9)
