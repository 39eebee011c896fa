"""SIVI maths: Gaussian log density, the mixture term, the surrogate bound on a toy model
with a known marginal, and the KL weight schedule."""

from __future__ import annotations

import math

import pytest
import torch

from pfedkit.stats.sivi import diag_gaussian_log_prob, kl_weight, sivi_kl_term, sivi_log_mixture, sivi_surrogate_bound


def test_diag_gaussian_log_prob_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 7, generator=g)
    mean = torch.randn(3, 7, generator=g)
    std = torch.rand(5, 1, 7, generator=g) + 0.1
    expected = torch.distributions.Independent(torch.distributions.Normal(mean, std), 1).log_prob(x)
    got = diag_gaussian_log_prob(x, mean, std)
    assert got.shape == (5, 3)
    torch.testing.assert_close(got, expected)
    scalar = torch.distributions.Independent(torch.distributions.Normal(mean, 0.5), 1).log_prob(x)
    torch.testing.assert_close(diag_gaussian_log_prob(x, mean, 0.5), scalar)


def test_mixture_of_equal_components_is_one_gaussian_and_float32_safe() -> None:
    g = torch.Generator().manual_seed(1)
    B, P = 4, 7680  # a ViT-B prompt (L=10, D=768): component densities underflow float32
    p = torch.randn(B, P, generator=g)
    psi = torch.randn(B, P, generator=g)
    std = torch.full((B, P), 0.05)
    single = diag_gaussian_log_prob(p, psi, std)
    mixed = sivi_log_mixture(p, psi.expand(9, B, P), std)
    assert mixed.shape == (B,)
    assert torch.isfinite(mixed).all() and (single < -1e5).all()
    torch.testing.assert_close(mixed, single, rtol=1e-6, atol=0.0)
    psi_all = torch.randn(9, B, P, generator=g)
    exact = sivi_log_mixture(p.double(), psi_all.double(), std.double())
    torch.testing.assert_close(sivi_log_mixture(p, psi_all, std).double(), exact, rtol=1e-5, atol=0.0)


def test_kl_term_and_bound_are_consistent() -> None:
    g = torch.Generator().manual_seed(2)
    p, std, mu0 = torch.randn(3, 4, generator=g), torch.rand(3, 4, generator=g) + 0.2, torch.randn(4, generator=g)
    psi_all = torch.randn(5, 3, 4, generator=g)
    log_lik = torch.randn(3, generator=g)
    term = sivi_kl_term(p, psi_all, std, mu0, 1.5)
    expected = diag_gaussian_log_prob(p, mu0, 1.5) - sivi_log_mixture(p, psi_all, std)
    torch.testing.assert_close(term, expected)
    torch.testing.assert_close(sivi_surrogate_bound(log_lik, p, psi_all, std, mu0, 1.5, 0.3), log_lik + 0.3 * term)


def test_surrogate_bound_tightens_to_log_evidence_on_a_toy_model() -> None:
    """Hierarchical toy: psi = A eps + b (eps ~ N(0, I)), p | psi ~ N(psi, s^2 I), so the
    marginal h(p) = N(b, A A^T + s^2 I) is known. Target: a joint p(y, p) = Z h(p) with a
    known log Z, written as log_lik(p) = log Z + log h(p) - log p_0(p). Then the exact ELBO
    is log Z and E[L_K] = log Z - (E log mixture_K - E log h), which must rise with K
    towards log Z and never exceed it (up to Monte-Carlo error)."""
    g = torch.Generator().manual_seed(0)
    A = torch.tensor([[1.5, 0.0], [0.8, 0.6]])
    b, s, log_z = torch.tensor([0.5, -1.0]), 0.5, 2.3
    prior_mean, prior_std = torch.tensor([0.2, 0.1]), 2.0
    n, k_max = 20_000, 128
    marginal = torch.distributions.MultivariateNormal(b, A @ A.T + s * s * torch.eye(2))
    psi = torch.randn(k_max + 1, n, 2, generator=g) @ A.T + b  # nested draws: common random numbers
    p = psi[0] + s * torch.randn(n, 2, generator=g)
    std = torch.full((n, 2), s)
    log_lik = log_z + marginal.log_prob(p) - diag_gaussian_log_prob(p, prior_mean, prior_std)

    bounds = {k: sivi_surrogate_bound(log_lik, p, psi[: k + 1], std, prior_mean, prior_std, 1.0).double()
              for k in (1, 8, 32, 128)}
    means = {k: v.mean().item() for k, v in bounds.items()}
    for k, v in bounds.items():  # a lower bound on log Z
        assert means[k] <= log_z + 3 * v.std().item() / math.sqrt(n), (k, means[k])
    ks = sorted(bounds)
    for lo, hi in zip(ks, ks[1:]):  # non-decreasing in K, beyond Monte-Carlo error of the difference
        diff = bounds[hi] - bounds[lo]
        assert diff.mean().item() > -3 * diff.std().item() / math.sqrt(n), (lo, hi, means)
    assert means[1] < means[8] < means[32] < means[128]
    assert log_z - means[1] > 0.5  # K = 1 is loose ...
    assert abs(log_z - means[128]) < 0.08  # ... K = 128 is nearly tight


@pytest.mark.parametrize(
    ("round_", "warmup", "expected"),
    [(0, 10, 0.0), (5, 10, 0.5 * 2.0 / 40), (10, 10, 2.0 / 40), (25, 10, 2.0 / 40), (0, 0, 2.0 / 40)],
)
def test_kl_weight_warmup(round_: int, warmup: int, expected: float) -> None:
    assert kl_weight(round_, warmup, base=2.0, prompt_numel=40) == pytest.approx(expected)


def test_kl_weight_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        kl_weight(-1, 10, 1.0, 40)
    with pytest.raises(ValueError):
        kl_weight(1, 10, 1.0, 0)
