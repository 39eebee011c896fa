"""FedPer: the body is federated, each client keeps its own head."""

import math

import pytest
import torch
from support import ctx, make_algorithm, run_sim, small_federation


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def test_uploads_only_body_and_keeps_head_personal(setup):
    cfg, fed = setup
    algo = make_algorithm("fedper", fed, cfg=cfg)
    body, head = set(algo.keys("body")), set(algo.keys("head"))
    server = algo.init_server()
    assert set(algo.broadcast(server, 1)) == body
    state = algo.init_client(fed.clients[0])
    assert set(state) == head
    up = algo.local_update(algo.broadcast(server, 1), state, fed.clients[0], ctx())
    assert set(up.upload) == body
    assert set(up.state) == head
    assert any(not torch.equal(up.state[k], state[k]) for k in head)  # the personal head trained


def test_personal_heads_differ_between_clients(setup):
    cfg, fed = setup
    res = run_sim("fedper", fed, rounds=2, cfg=cfg)
    algo = make_algorithm("fedper", fed, cfg=cfg)
    assert set(res.server) == set(algo.keys("body"))
    for key in algo.keys("head"):
        assert not torch.allclose(res.client_states[0][key], res.client_states[1][key])
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
