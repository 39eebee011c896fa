"""LG-FedAvg: the head is federated, each client keeps its own body."""

import math

import pytest
import torch
from support import ctx, make_algorithm, run_sim, small_federation


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def test_uploads_only_head_and_keeps_body_personal(setup):
    cfg, fed = setup
    algo = make_algorithm("lg_fedavg", fed, cfg=cfg)
    body, head = set(algo.keys("body")), set(algo.keys("head"))
    server = algo.init_server()
    assert set(algo.broadcast(server, 1)) == head
    state = algo.init_client(fed.clients[0])
    assert set(state) == body
    up = algo.local_update(algo.broadcast(server, 1), state, fed.clients[0], ctx())
    assert set(up.upload) == head
    assert set(up.state) == body


def test_bodies_differ_between_clients_and_bytes_are_head_only(setup):
    cfg, fed = setup
    res = run_sim("lg_fedavg", fed, rounds=2, cfg=cfg)
    algo = make_algorithm("lg_fedavg", fed, cfg=cfg)
    head_bytes = sum(t.numel() * t.element_size() for k, t in algo.snapshot(algo.keys("head")).items())
    assert res.history[-1]["bytes_up"] == head_bytes * len(res.history[-1]["clients"])
    key = algo.keys("body")[0]
    assert not torch.allclose(res.client_states[0][key], res.client_states[1][key])
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])


def test_pretraining_rounds_are_fedavg_then_bodies_stay_local(setup):
    cfg, fed = setup
    algo = make_algorithm("lg_fedavg", fed, {"pretrain_rounds": 1}, cfg=cfg)
    body, head = set(algo.keys("body")), set(algo.keys("head"))
    server = algo.init_server()
    assert set(algo.broadcast(server, 1)) == body | head and set(algo.broadcast(server, 2)) == head
    c = fed.clients[0]
    up = algo.local_update(algo.broadcast(server, 1), algo.init_client(c), c, ctx(1))
    assert set(up.upload) == body | head and set(up.state) == body
    assert all(torch.equal(up.state[k], up.upload[k]) for k in body)  # the client keeps its pretrained body
    res = run_sim("lg_fedavg", fed, {"pretrain_rounds": 1}, rounds=2, cfg=cfg)
    head_bytes = sum(t.numel() * t.element_size() for t in algo.snapshot(sorted(head)).values())
    assert res.history[0]["bytes_up"] > res.history[1]["bytes_up"] == head_bytes * len(fed.clients)
