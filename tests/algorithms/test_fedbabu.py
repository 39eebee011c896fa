"""FedBABU: the head never moves during federation; fine-tuning happens only before evaluation."""

import math

import pytest
import torch
from support import ctx, make_algorithm, run_sim, small_federation


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def test_head_stays_at_init_during_federation(setup):
    cfg, fed = setup
    init = make_algorithm("fedbabu", fed, cfg=cfg).init_server()
    res = run_sim("fedbabu", fed, {"ft_epochs": 1}, rounds=2, cfg=cfg)
    algo = make_algorithm("fedbabu", fed, cfg=cfg)
    for key in algo.keys("head"):
        assert torch.equal(res.server[key], init[key])
    assert any(not torch.equal(res.server[k], init[k]) for k in algo.keys("body"))
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])


def test_local_update_trains_and_uploads_body_only(setup):
    cfg, fed = setup
    algo = make_algorithm("fedbabu", fed, cfg=cfg)
    server = algo.init_server()
    up = algo.local_update(algo.broadcast(server, 1), algo.init_client(fed.clients[0]), fed.clients[0], ctx())
    assert set(up.upload) == set(algo.keys("body"))
    assert up.state == {}
    for key in algo.keys("head"):  # the workspace head was frozen during training
        assert torch.equal(algo.snapshot([key])[key], server[key])


def test_personal_predictor_fine_tunes_on_train_without_touching_payloads(setup):
    cfg, fed = setup
    data = fed.clients[2]
    x = data.x_val
    for part in ("all", "head"):
        algo = make_algorithm("fedbabu", fed, {"ft_epochs": 2, "ft_part": part}, cfg=cfg)
        server = algo.init_server()
        bcast = algo.broadcast(server, 1)
        kept = {k: v.clone() for k, v in bcast.items()}
        with torch.no_grad():
            algo.load(bcast)
            algo.model.eval()
            global_out = algo.model(x).clone()
            tuned_out = algo.personal_predictor(bcast, {}, data, ctx())(x)
        assert not torch.allclose(global_out, tuned_out)
        assert all(torch.equal(bcast[k], kept[k]) for k in kept)  # persistent payloads untouched
        body_moved = any(not torch.equal(algo.snapshot([k])[k], bcast[k]) for k in algo.keys("body"))
        assert body_moved == (part == "all")
    algo = make_algorithm("fedbabu", fed, {"ft_epochs": 0}, cfg=cfg)
    bcast = algo.broadcast(algo.init_server(), 1)
    with torch.no_grad():
        out = algo.personal_predictor(bcast, {}, data, ctx())(x)
    assert torch.allclose(out, global_out)
