"""The semi-implicit prompt generator: shapes, variants (ablation flags), low rank,
reparameterised gradients and the Bayesian predictive average."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pfedkit.models.prompt_posterior import (
    ExplicitGaussianLayer,
    ImplicitMixingNetwork,
    SemiImplicitPromptPosterior,
    bayes_predictive,
)

B, F, L, D, R = 6, 12, 3, 8, 4


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def posterior(**flags: bool) -> SemiImplicitPromptPosterior:
    torch.manual_seed(0)
    model = SemiImplicitPromptPosterior(F, L, D, noise_dim=5, hidden=16, rank=R, prior_std=1.0, **flags)
    for layer in (model.mixing.out[-1], *([model.explicit.scale[-1]] if model.explicit is not None else [])):
        nn.init.normal_(layer.weight, std=0.3)  # move off the zero initialisation, as training would
    return model


def features(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, F, generator=gen(seed))


def test_shapes() -> None:
    model, e = posterior(), features()
    s = model.sample(e, K=7, generator=gen(1))
    assert s.prompt.shape == (B, L, D) and s.sigma.shape == (B, L, D) and s.psi_all.shape == (8, B, L, D)
    assert model.kl_term(s).shape == (B,)
    assert model.mean_prompt(e).shape == (B, L, D)
    assert model.predictive_samples(e, 5, gen(2)).shape == (5, B, L, D)
    assert (s.sigma >= 1e-3).all()


def test_initialisation_starts_at_global_prompt_and_sigma_init() -> None:
    torch.manual_seed(0)
    model = SemiImplicitPromptPosterior(F, L, D, noise_dim=5, hidden=16, rank=R, sigma_init=0.2)
    s = model.sample(features(), K=3, generator=gen(0))
    torch.testing.assert_close(s.psi_all, model.prior_mean.detach().expand(4, B, L, D))
    torch.testing.assert_close(s.sigma, torch.full((B, L, D), 0.2))


def test_deterministic_generator_is_a_deterministic_prompt_network() -> None:
    model, e = posterior(stochastic=False), features()
    a = model.sample(e, K=8, generator=gen(1))
    b = model.sample(e, K=8, generator=gen(99))
    assert torch.equal(a.prompt, b.prompt)
    assert torch.equal(a.prompt, model.mean_prompt(e))
    assert torch.equal(model.kl_term(a), torch.zeros(B))
    preds = model.predictive_samples(e, 3, gen(5))
    assert torch.equal(preds, a.prompt.expand(3, -1, -1, -1))
    assert model.explicit is None and model.mixing.noise_in is None


def test_semi_implicit_sampling_depends_on_the_generator_only() -> None:
    model, e = posterior(), features()
    a, b = model.sample(e, K=4, generator=gen(1)), model.sample(e, K=4, generator=gen(1))
    c = model.sample(e, K=4, generator=gen(2))
    assert torch.equal(a.prompt, b.prompt) and torch.equal(a.psi_all, b.psi_all)
    assert not torch.allclose(a.psi_all, c.psi_all)
    assert not torch.allclose(a.psi_all[0], a.psi_all[1])  # the mixing noise moves psi


def test_explicit_only_ignores_mixing_noise() -> None:
    model, e = posterior(implicit=False), features()
    assert model.mixing.noise_in is None
    a, c = model.sample(e, K=8, generator=gen(1)), model.sample(e, K=8, generator=gen(2))
    assert a.psi_all.shape == (1, B, L, D)
    assert torch.equal(a.psi_all, c.psi_all)
    torch.testing.assert_close(a.psi_all[0], model.mean_prompt(e))
    assert not torch.allclose(a.prompt, c.prompt)  # xi still samples
    # the mixture is a single Gaussian: kl_term = log p_0(p) - log q(p | psi)
    log_q = ExplicitGaussianLayer.log_prob(a.prompt, a.psi_all[0], a.sigma)
    log_p0 = torch.distributions.Normal(model.prior_mean, 1.0).log_prob(a.prompt).sum((-2, -1))
    torch.testing.assert_close(model.kl_term(a), log_p0 - log_q)


def test_mean_prompt_is_psi_at_zero_noise() -> None:
    model, e = posterior(), features()
    expected = model.mixing(e, torch.zeros(1, B, 5))[0] + model.prior_mean
    torch.testing.assert_close(model.mean_prompt(e), expected)
    non_residual = posterior(residual=False)
    torch.testing.assert_close(non_residual.mean_prompt(e), non_residual.mixing(e, torch.zeros(1, B, 5))[0])


def test_mixing_output_has_low_rank() -> None:
    torch.manual_seed(0)
    net = ImplicitMixingNetwork(F, 5, 32, R, L, D)
    nn.init.normal_(net.out[-1].weight)
    nn.init.normal_(net.out[-1].bias)
    psi = net.sample(torch.randn(50, F, generator=gen(3)), 4, gen(4))  # (4, 50, L, D)
    centred = psi.reshape(-1, L * D) - net.out[-1].bias
    assert torch.linalg.matrix_rank(centred).item() <= R
    assert torch.linalg.matrix_rank(psi.reshape(-1, L * D)).item() <= R + 1


def test_mixing_draws_share_one_batched_pass() -> None:
    torch.manual_seed(0)
    net = ImplicitMixingNetwork(F, 5, 16, R, L, D)
    nn.init.normal_(net.out[-1].weight)
    e, eps = features(), torch.randn(3, B, 5, generator=gen(7))
    together = net(e, eps)
    one_by_one = torch.stack([net(e, eps[i : i + 1])[0] for i in range(3)])
    torch.testing.assert_close(together, one_by_one)


@pytest.mark.parametrize("residual", [True, False])
def test_gradients_reach_generator_and_global_prompt(residual: bool) -> None:
    model, e = posterior(residual=residual), features()
    s = model.sample(e, K=4, generator=gen(1))
    target = torch.randn(L, D, generator=gen(8))
    log_lik = -(s.prompt - target).square().sum((-2, -1))  # a toy likelihood of the prompt
    loss = -(log_lik + 0.5 * model.kl_term(s)).mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert {"mixing.noise_in.weight", "explicit.scale.0.weight", "prior_mean"} <= dict(model.named_parameters()).keys()


def test_bayes_predictive_averages_probabilities() -> None:
    logits = torch.randn(4, B, 3, generator=gen(9))
    expected = torch.softmax(logits, -1).mean(0).log()
    torch.testing.assert_close(bayes_predictive(logits), expected)
    torch.testing.assert_close(bayes_predictive(torch.log_softmax(logits, -1)), expected)
    torch.testing.assert_close(bayes_predictive(logits[:1]), torch.log_softmax(logits[0], -1))
    assert math.isclose(bayes_predictive(logits).exp().sum(-1).mean().item(), 1.0, rel_tol=1e-6)
