"""Ditto: the personal model is pulled towards the received global model by lambda."""

import math

import pytest
import torch
from support import ctx, make_algorithm, run_sim, small_federation


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def _distance(a: dict, b: dict, keys: list) -> float:
    return float(sum(((a[k] - b[k]) ** 2).sum() for k in keys)) ** 0.5


def test_larger_lambda_keeps_personal_model_closer_to_global(setup):
    cfg, fed = setup
    data = fed.clients[0]
    distances, uploads = [], []
    for lam in (0.0, 1.0, 5.0):
        algo = make_algorithm("ditto", fed, {"lam": lam, "personal_epochs": 2}, cfg=cfg)
        server = algo.init_server()
        params = [n for n, _ in algo.model.named_parameters()]
        up = algo.local_update(algo.broadcast(server, 1), algo.init_client(data), data, ctx())
        distances.append(_distance(up.state, server, params))
        uploads.append(up.upload)
    assert distances[0] > distances[1] > distances[2] > 0
    # the global model's local training ignores lambda (it is plain FedAvg training)
    assert all(torch.equal(uploads[0][k], uploads[2][k]) for k in uploads[0])


def test_personal_model_persists_and_is_what_is_evaluated(setup):
    cfg, fed = setup
    data = fed.clients[1]
    algo = make_algorithm("ditto", fed, cfg=cfg)
    bcast = algo.broadcast(algo.init_server(), 1)
    up = algo.local_update(bcast, {}, data, ctx())
    assert set(up.state) == set(algo.model.state_dict())
    assert any(not torch.equal(up.state[k], up.upload[k]) for k in up.state)  # v differs from w
    with torch.no_grad():
        out = algo.personal_predictor(up.upload, up.state, data, ctx())(data.x_val)
        algo.load(up.state)
        assert torch.allclose(out, algo.model(data.x_val))
    # the next round continues from v, not from the broadcast
    again = algo.local_update(up.upload, up.state, data, ctx(round=2))
    fresh = algo.local_update(up.upload, {}, data, ctx(round=2))
    assert any(not torch.equal(again.state[k], fresh.state[k]) for k in again.state)


def test_runs_two_rounds(setup):
    cfg, fed = setup
    res = run_sim("ditto", fed, rounds=2, cfg=cfg)
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
