"""FedPAC: features aligned to global prototypes; each client's head is a convex combination of
the round's heads, with weights solving the bias-variance QP."""

import itertools
import math

import pytest
import torch
from support import SMALL, ctx, make_algorithm, run_sim, small_federation, tiny_config

from pfedkit.algorithms.methods.fedpac import (
    COMBINED,
    VAR,
    feature_variance,
    head_combination_weights,
    solve_simplex_qp,
)
from pfedkit.algorithms.toolkit import prototypes as P
from pfedkit.algorithms.toolkit.training import features_in_batches
from pfedkit.core.payload import payload_nbytes


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def _is_convex(rows: torch.Tensor) -> bool:
    return bool((rows >= 0).all()) and torch.allclose(rows.sum(1), torch.ones(rows.shape[0], dtype=rows.dtype))


def test_combination_weights_are_convex_and_solve_the_qp():
    g = torch.Generator().manual_seed(0)
    v, h = torch.rand(5, generator=g), torch.rand(5, 3, 4, generator=g)
    alpha = head_combination_weights(v, h, eps=0.0)
    assert alpha.shape == (5, 5) and _is_convex(alpha)
    # optimality: no point of a fine simplex grid does better than the solver
    flat = h.double().flatten(1)
    for i in range(5):
        delta = flat[i] - flat
        q = torch.diag(v.double()) + delta @ delta.T
        best = float(alpha[i] @ q @ alpha[i])
        for cell in itertools.product(range(6), repeat=4):
            if sum(cell) <= 5:
                a = torch.tensor([*cell, 5 - sum(cell)], dtype=torch.float64) / 5
                assert best <= float(a @ q @ a) + 1e-9


def test_combination_weights_trade_bias_against_variance():
    h = torch.rand(4, 3, 2, generator=torch.Generator().manual_seed(1))
    # identical clients: only the variance term is left, minimised by the uniform mixture
    same = head_combination_weights(torch.ones(4), h[:1].expand(4, 3, 2), eps=0.0)
    assert torch.allclose(same, torch.full((4, 4), 0.25, dtype=torch.float64), atol=1e-6)
    # no estimation noise: borrowing only adds bias, each client keeps its own head
    own = head_combination_weights(torch.zeros(4), h, eps=0.0)
    assert torch.allclose(own, torch.eye(4, dtype=torch.float64), atol=1e-6)
    # small weights are zeroed and the row renormalised
    cut = head_combination_weights(torch.ones(4), h, eps=0.3)
    assert _is_convex(cut) and bool(((cut == 0) | (cut >= 0.3)).all())


def test_simplex_qp_two_dimensional_closed_form():
    # min a^2 * 1 + (1 - a)^2 * 3 -> a = 3/4
    a = solve_simplex_qp(torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64)))
    assert torch.allclose(a, torch.tensor([0.75, 0.25], dtype=torch.float64), atol=1e-8)


def test_feature_variance_matches_definition():
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
    expected = 0.0
    for k in range(3):
        zk = z[y == k].double()
        p = len(zk) / 30
        expected += p * float((zk * zk).sum(1).mean()) - p * p * float((zk.mean(0) ** 2).sum())
    assert math.isclose(feature_variance(z, y, 3), expected / 30, rel_tol=1e-9)


def test_body_training_aligns_features_to_global_prototypes(setup):
    _, fed = setup
    cfg = tiny_config(*SMALL, "train.local_epochs=3")
    c = fed.clients[1]
    targets = torch.rand(fed.num_classes, cfg.model.options_for("cnn").feature_dim, generator=torch.Generator().manual_seed(3))
    dist = {}
    for lam in (0.0, 20.0):
        algo = make_algorithm("fedpac", fed, {"lam": lam}, cfg=cfg)
        bcast = {**algo.init_server(), P.MEANS: targets, P.AVAILABLE: torch.ones(fed.num_classes)}
        algo.local_update(bcast, algo.init_client(c), c, ctx())
        z = features_in_batches(algo.model, c.x_train)
        dist[lam] = float(((z - targets[c.y_train]) ** 2).mean())
    assert dist[20.0] < 0.75 * dist[0.0]


def test_server_recombines_heads_with_convex_weights(setup):
    cfg, fed = setup
    algo = make_algorithm("fedpac", fed, cfg=cfg)
    server = algo.init_server()
    bcast = algo.broadcast(server, 1)
    ups = [algo.local_update(bcast, algo.init_client(c), c, ctx(1, c.client_id)) for c in fed.clients]
    head, body = algo.keys("head"), algo.keys("body")
    assert set(ups[0].state) == set(head)
    assert set(ups[0].upload) == set(body) | set(head) | {P.MEANS, P.COUNTS, VAR}
    assert [u.client_id for u in ups] == [c.client_id for c in fed.clients]
    new = algo.aggregate(server, ups, 1)
    hrefs = torch.stack([u.upload[P.MEANS].double() * (u.upload[P.COUNTS].double() / u.weight)[:, None] for u in ups])
    alpha = head_combination_weights(torch.cat([u.upload[VAR].double() for u in ups]), hrefs)
    assert _is_convex(alpha)
    for i, c in enumerate(fed.clients):
        for key in head:
            mixed = sum(alpha[i, j].float() * ups[j].upload[key] for j in range(len(ups)))
            assert torch.allclose(new[f"{COMBINED}{c.client_id}.{key}"], mixed, atol=1e-6)
    # each client receives only its own recombined head
    own = algo.for_client(algo.broadcast(new, 2), fed.clients[0].client_id)
    assert {k for k in own if k.startswith(COMBINED)} == {f"{COMBINED}{fed.clients[0].client_id}.{k}" for k in head}
    assert set(own) - {k for k in own if k.startswith(COMBINED)} == set(body) | {P.MEANS, P.AVAILABLE}
    # the personal model uses the recombined head and the averaged body
    algo.personal_predictor(own, ups[0].state, fed.clients[0], ctx(2, 0))
    now = algo.snapshot()
    for key in head:
        assert torch.equal(now[key], new[f"{COMBINED}{fed.clients[0].client_id}.{key}"])
    for key in body:
        assert torch.equal(now[key], new[key])


def test_runs_two_rounds(setup):
    cfg, fed = setup
    res = run_sim("fedpac", fed, rounds=2, cfg=cfg)
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
    assert all(k in res.server for k in (P.MEANS, P.AVAILABLE)) and res.server[P.AVAILABLE].sum() > 0
    # round 2 bills each client for the body, the prototypes and one head, not every client's head
    algo = make_algorithm("fedpac", fed, cfg=cfg)
    one_client = payload_nbytes(algo.for_client(algo.broadcast(res.server, 2), 0))
    assert res.history[1]["bytes_down"] == len(fed.clients) * one_client
    assert one_client < payload_nbytes(res.server)
