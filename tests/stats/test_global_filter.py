"""Global-level Kalman filter across rounds (spec §4)."""

from __future__ import annotations

import torch

from pfedkit.stats import (
    GlobalFilterState,
    GlobalPrior,
    anchor_shift_noise,
    filter_pool,
    filter_predict,
    filter_update,
    observation_noise,
)

F64 = torch.float64


def spd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=F64)


def observation(means, cov, spread, num_clients, counts=None, dof=100.0) -> GlobalPrior:
    num_clients = torch.as_tensor(num_clients, dtype=F64)
    counts = torch.as_tensor(counts if counts is not None else num_clients * 10.0, dtype=F64)
    return GlobalPrior(
        means=means,
        cov=cov,
        spread=spread,
        class_prior=counts / counts.sum(),
        num_clients=num_clients,
        class_counts=counts,
        dof=torch.tensor(dof, dtype=F64),
    )


def test_first_observation_initialises_each_class() -> None:
    d = 3
    obs = observation(
        torch.randn(3, d, dtype=F64), spd(d, 0), torch.stack([spd(d, 1), spd(d, 2), spd(d, 3)]), [2, 1, 0]
    )
    state = filter_update(GlobalFilterState.empty(3, d), obs)
    assert state.initialized.tolist() == [True, True, False]
    torch.testing.assert_close(state.means[:2], obs.means[:2])
    torch.testing.assert_close(state.mean_uncertainty[0], (obs.cov + obs.spread[0]) / 2)
    torch.testing.assert_close(state.mean_uncertainty[1], obs.cov + obs.spread[1])
    assert torch.equal(state.means[2], torch.zeros(d, dtype=F64))
    torch.testing.assert_close(state.cov, obs.cov)
    prior = state.to_prior()
    assert prior.available.tolist() == [True, True, False]


def test_class_no_participant_holds_is_kept_and_only_gains_q() -> None:
    d, q = 4, 0.3
    first = observation(torch.randn(2, d, dtype=F64), spd(d, 0), torch.stack([spd(d, 1), spd(d, 2)]), [3, 2])
    state = filter_update(GlobalFilterState.empty(2, d), first)
    before = state
    second = observation(torch.randn(2, d, dtype=F64) + 5.0, spd(d, 3), torch.stack([spd(d, 4), spd(d, 5)]), [2, 0])
    after = filter_update(filter_predict(state, q), second)
    assert torch.equal(after.means[1], before.means[1])
    torch.testing.assert_close(after.mean_uncertainty[1], before.mean_uncertainty[1] + q * torch.eye(d, dtype=F64))
    # Class 0 was held, so it moved towards the new observation and its uncertainty shrank.
    assert not torch.equal(after.means[0], before.means[0])
    assert torch.trace(after.mean_uncertainty[0]) < torch.trace(before.mean_uncertainty[0]) + q * d
    # Spread of class 1 is carried (not overwritten by the absent class's zeros).
    torch.testing.assert_close(after.spread[1], before.spread[1])


def test_scalar_filter_matches_closed_form() -> None:
    # d = 1: U = a, V = b -> mean (b mu + a x) / (a + b), variance a b / (a + b).
    mu0, x0, x1 = 1.0, 1.0, 4.0
    cov, spread = 2.0, 1.0  # first V = 3.0 (m = 1)
    state = filter_update(
        GlobalFilterState.empty(1, 1),
        observation(torch.tensor([[x0]], dtype=F64), torch.tensor([[cov]], dtype=F64),
                    torch.tensor([[[spread]]], dtype=F64), [1]),
    )
    a = 3.0 + 0.5  # after predict with q = 0.5
    state = filter_predict(state, 0.5)
    state = filter_update(
        state,
        observation(torch.tensor([[x1]], dtype=F64), torch.tensor([[cov]], dtype=F64),
                    torch.tensor([[[spread]]], dtype=F64), [3]),
    )
    b = (cov + spread) / 3
    torch.testing.assert_close(float(state.means[0, 0]), (b * mu0 + a * x1) / (a + b))
    torch.testing.assert_close(float(state.mean_uncertainty[0, 0, 0]), a * b / (a + b))


def test_full_filter_is_the_gaussian_posterior() -> None:
    d = 5
    u0, cov, spread = spd(d, 10), spd(d, 11), spd(d, 12)
    mu = torch.randn(1, d, dtype=F64)
    state = GlobalFilterState(
        means=mu, mean_uncertainty=u0[None], cov=cov, cov_uncertainty=torch.tensor(0.1, dtype=F64),
        initialized=torch.tensor([True]), spread=torch.zeros(1, d, d, dtype=F64),
        class_counts=torch.ones(1, dtype=F64), num_clients=torch.ones(1, dtype=F64),
    )
    obs = observation(torch.randn(1, d, dtype=F64), cov, spread[None], [2])
    v = observation_noise(obs)[0]
    out = filter_update(state, obs)
    ui, vi = torch.linalg.inv(u0), torch.linalg.inv(v)
    post_cov = torch.linalg.inv(ui + vi)
    torch.testing.assert_close(out.means[0], post_cov @ (ui @ mu[0] + vi @ obs.means[0]))
    torch.testing.assert_close(out.mean_uncertainty[0], post_cov)
    # Equal covariances up to scale: gain alpha / (alpha + beta) * I.
    alpha, beta, a = 2.0, 3.0, spd(d, 13)
    state2 = GlobalFilterState(**{**state.__dict__, "mean_uncertainty": (alpha * a)[None]})
    obs2 = observation(obs.means, beta * a, torch.zeros(1, d, d, dtype=F64), [1])
    out2 = filter_update(state2, obs2)
    torch.testing.assert_close(out2.means[0], mu[0] + alpha / (alpha + beta) * (obs.means[0] - mu[0]))


def test_covariance_is_fused_by_degrees_of_freedom() -> None:
    d = 3
    s1, s2 = spd(d, 20), spd(d, 21)
    zeros = torch.zeros(1, d, d, dtype=F64)
    mean = torch.zeros(1, d, dtype=F64)
    state = filter_update(GlobalFilterState.empty(1, d), observation(mean, s1, zeros, [1], dof=30.0))
    state = filter_update(state, observation(mean, s2, zeros, [1], dof=10.0))
    torch.testing.assert_close(state.cov, (30 * s1 + 10 * s2) / 40)
    torch.testing.assert_close(float(state.cov_uncertainty), 1 / 40)
    torch.testing.assert_close(float(state.to_prior().dof), 40.0)


def test_pool_takes_the_observation_and_keeps_absent_classes() -> None:
    d = 2
    first = observation(torch.randn(2, d, dtype=F64), spd(d, 0), torch.zeros(2, d, d, dtype=F64), [1, 1])
    state = filter_pool(GlobalFilterState.empty(2, d), first)
    second = observation(torch.randn(2, d, dtype=F64), spd(d, 1), torch.zeros(2, d, d, dtype=F64), [1, 0])
    state = filter_pool(filter_predict(state, 1.0), second)
    torch.testing.assert_close(state.means[0], second.means[0])
    torch.testing.assert_close(state.means[1], first.means[1])
    torch.testing.assert_close(state.cov, second.cov)


def test_class_prior_accumulates_and_payload_round_trips() -> None:
    d = 2
    z = torch.zeros(2, d, d, dtype=F64)
    mean = torch.zeros(2, d, dtype=F64)
    state = filter_update(GlobalFilterState.empty(2, d), observation(mean, spd(d, 0), z, [1, 1], counts=[30, 10]))
    state = filter_update(state, observation(mean, spd(d, 0), z, [1, 0], counts=[20, 0]))
    torch.testing.assert_close(state.to_prior().class_prior, torch.tensor([50 / 60, 10 / 60], dtype=F64))
    back = GlobalFilterState.from_payload(state.to_payload("f."), "f.")
    for k in state.__dataclass_fields__:
        assert torch.equal(getattr(back, k), getattr(state, k))


def test_anchor_shift_noise() -> None:
    old = torch.zeros(2, 4)
    new = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0]])
    torch.testing.assert_close(anchor_shift_noise(old, new), torch.tensor([1.0, 1.0], dtype=F64))
