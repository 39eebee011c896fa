"""pFedFDA: cross-validated beta in [0, 1] interpolates local and global Gaussian statistics; the
personal head is Bayes' rule with the interpolated tied-covariance Gaussians."""

import math

import pytest
import torch
from support import ctx, make_algorithm, run_sim, small_federation

from pfedkit.algorithms.methods.pfedfda import (
    BETA,
    COV,
    MEANS,
    VALID,
    PFedFDAHParams,
    adaptive_gaussian,
    local_gaussian,
    local_prior,
    select_beta,
)
from pfedkit.algorithms.toolkit.training import features_in_batches
from pfedkit.stats.sufficient import shrink


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def _clusters(means: torch.Tensor, per_class: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(means.shape[0]).repeat_interleave(per_class)
    return means[y] + scale * torch.randn(len(y), means.shape[1], generator=g, dtype=means.dtype), y


def test_beta_lies_in_unit_interval_and_follows_the_evidence():
    g = torch.Generator().manual_seed(0)
    true = 3.0 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    z, y = _clusters(true, 20, 0.5, 1)
    prior = local_prior(torch.bincount(y, minlength=4), 1e-4)
    valid = torch.ones(4, dtype=torch.bool)
    hp = PFedFDAHParams(cov_ridge=0.0)
    # global means of the wrong classes: cross-validation trusts the local means
    wrong = select_beta(z, y, true.roll(1, 0), torch.eye(5, dtype=torch.float64), valid, prior, hp, g)
    assert wrong.shape == (2,) and bool(((wrong >= 0) & (wrong <= 1)).all())
    assert float(wrong[0]) == 1.0
    # global statistics equal to the truth: the means need no local correction
    right = select_beta(z, y, true, 0.25 * torch.eye(5, dtype=torch.float64), valid, prior, hp, g)
    assert bool(((right >= 0) & (right <= 1)).all()) and float(right[0]) < 1.0
    tied = select_beta(z, y, true.roll(1, 0), torch.eye(5, dtype=torch.float64), valid, prior,
                       PFedFDAHParams(single_beta=True), g)
    assert float(tied[0]) == float(tied[1])
    # too few samples for any fold: fall back to the global statistics
    none = select_beta(z[:1], y[:1], true, torch.eye(5, dtype=torch.float64), valid, prior, hp, g)
    assert torch.equal(none, torch.zeros(2, dtype=torch.float64))


def test_beta_one_gives_local_and_zero_global_statistics():
    g = torch.Generator().manual_seed(2)
    z, y = _clusters(torch.randn(3, 4, generator=g, dtype=torch.float64), 10, 1.0, 3)
    y[y == 2] = 1  # class 2 absent locally
    gm, gc = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.eye(4, dtype=torch.float64) * 2.0
    lm, lc, usable = local_gaussian(z, y, 3, torch.ones(3, dtype=torch.bool), 2, 0.0)
    assert usable.tolist() == [True, True, False]
    m1, c1 = adaptive_gaussian(lm, lc, usable, gm, gc, torch.tensor([1.0, 1.0]))
    assert torch.allclose(m1[:2], torch.stack([z[y == 0].mean(0), z[y == 1].mean(0)]))
    assert torch.allclose(m1[2], gm[2])  # a class the client lacks keeps the global mean
    assert torch.allclose(c1, lc)
    m0, c0 = adaptive_gaussian(lm, lc, usable, gm, gc, torch.tensor([0.0, 0.0]))
    assert torch.allclose(m0, gm) and torch.allclose(c0, gc)
    mh, ch = adaptive_gaussian(lm, lc, usable, gm, gc, torch.tensor([0.25, 0.5]))
    assert torch.allclose(mh[:2], 0.25 * lm[:2] + 0.75 * gm[:2]) and torch.allclose(ch, 0.5 * lc + 0.5 * gc)


def test_personal_head_is_bayes_rule_with_the_interpolated_gaussian(setup):
    cfg, fed = setup
    algo = make_algorithm("pfedfda", fed, cfg=cfg)
    c = fed.clients[0]
    server = algo.init_server()
    up = algo.local_update(algo.broadcast(server, 1), algo.init_client(c), c, ctx())
    bcast = algo.aggregate(server, [up], 1)
    pred = algo.personal_predictor(bcast, up.state, c, ctx(1))
    means, cov, _, betas = algo.personal_gaussian(bcast, c, ctx(1).generator)
    assert bool(((betas >= 0) & (betas <= 1)).all())
    prior = local_prior(c.class_counts("train"), algo.hp.prior_eps)
    z = features_in_batches(algo.model, c.x_test).double()
    dist = torch.distributions.MultivariateNormal(means, covariance_matrix=shrink(cov, algo.hp.eps))
    log_joint = dist.log_prob(z[:, None, :]) + prior.log()
    bayes = torch.softmax(log_joint, dim=1)
    assert torch.allclose(torch.softmax(pred(c.x_test).double(), dim=1), bayes, atol=1e-4)


def test_uploads_body_and_statistics_never_the_head(setup):
    cfg, fed = setup
    algo = make_algorithm("pfedfda", fed, cfg=cfg)
    c = fed.clients[1]
    up = algo.local_update(algo.init_server(), algo.init_client(c), c, ctx())
    d, n_cls = cfg.model.options_for("cnn").feature_dim, fed.num_classes
    assert set(up.upload) == set(algo.keys("body")) | {MEANS, COV, VALID}
    assert up.upload[MEANS].shape == (n_cls, d) and up.upload[COV].shape == (d, d)
    assert set(up.state) == {BETA} and bool(((up.state[BETA] >= 0) & (up.state[BETA] <= 1)).all())


def test_runs_two_rounds(setup):
    cfg, fed = setup
    res = run_sim("pfedfda", fed, rounds=2, cfg=cfg)
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
    assert torch.isfinite(res.server[COV]).all() and torch.isfinite(res.server[MEANS]).all()
