"""Tied-covariance Gaussian head: Bayes' rule, linear form, robustness."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import multivariate_normal

from pfedkit.stats import GaussianHead

F64 = torch.float64


def setup(c: int = 4, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(c, d, generator=g, dtype=F64)
    a = torch.randn(d, d, generator=g, dtype=F64)
    cov = a @ a.T + 0.3 * torch.eye(d, dtype=F64)
    prior = torch.rand(c, generator=g, dtype=F64) + 0.1
    prior = prior / prior.sum()
    z = means[torch.randint(0, c, (50,), generator=g)] + torch.randn(50, d, generator=g, dtype=F64)
    return means, cov, prior, z


def bayes_rule(means, cov, prior, z) -> np.ndarray:
    """Reference: pi_c N(z; mu_c, Sigma) / sum_c' pi_c' N(z; mu_c', Sigma), scipy densities."""
    joint = np.stack(
        [np.log(prior[c]) + multivariate_normal(means[c], cov).logpdf(z) for c in range(len(prior))], axis=1
    )
    return joint - np.logaddexp.reduce(joint, axis=1, keepdims=True)


def test_probabilities_equal_bayes_rule_with_scipy_densities() -> None:
    means, cov, prior, z = setup()
    ref = bayes_rule(means.numpy(), cov.numpy(), prior.numpy(), z.numpy())
    head64 = GaussianHead.from_gaussians(means, cov, class_prior=prior, dtype=F64)
    np.testing.assert_allclose(head64.predict_log_proba(z).numpy(), ref, rtol=1e-9, atol=1e-9)
    head32 = GaussianHead.from_gaussians(means, cov, class_prior=prior)
    assert head32.weight.dtype == torch.float32
    np.testing.assert_allclose(head32.predict_log_proba(z.float()).exp().numpy(), np.exp(ref), atol=1e-4)
    assert torch.equal(head32.predict(z.float()), torch.from_numpy(ref.argmax(1)))


def test_logits_differ_from_log_joint_by_a_class_independent_constant() -> None:
    means, cov, prior, z = setup(seed=1)
    head = GaussianHead.from_gaussians(means, cov, log_prior=prior.log(), dtype=F64)
    joint = np.stack(
        [np.log(prior[c].item()) + multivariate_normal(means[c].numpy(), cov.numpy()).logpdf(z.numpy())
         for c in range(4)], axis=1,
    )
    diff = joint - head.logits(z).numpy()
    np.testing.assert_allclose(diff, np.repeat(diff[:, :1], 4, axis=1), rtol=0, atol=1e-8)


def test_uniform_prior_default_zero_prior_and_singular_cov_stay_finite() -> None:
    means, cov, prior, z = setup(seed=2)
    uniform = GaussianHead.from_gaussians(means, cov, dtype=F64)
    ref = bayes_rule(means.numpy(), cov.numpy(), np.full(4, 0.25), z.numpy())
    np.testing.assert_allclose(uniform.predict_log_proba(z).numpy(), ref, rtol=1e-9, atol=1e-9)
    zero = GaussianHead.from_gaussians(means, cov, class_prior=torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=F64))
    logp = zero.predict_log_proba(z.float())
    assert torch.isfinite(logp).all() and logp[:, 2:].exp().max() < 1e-30
    singular = GaussianHead.from_gaussians(means, torch.zeros(5, 5, dtype=F64), class_prior=prior)
    assert torch.isfinite(singular.weight).all() and torch.isfinite(singular.bias).all()


def test_payload_round_trip() -> None:
    means, cov, prior, z = setup(seed=3)
    head = GaussianHead.from_gaussians(means, cov, class_prior=prior)
    back = GaussianHead.from_payload(head.to_payload("h."), "h.")
    assert torch.equal(back.logits(z), head.logits(z))
