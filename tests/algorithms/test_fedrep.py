"""FedRep: head epochs with the body frozen first, then body epochs with the head frozen."""

import math

import pytest
import torch
from support import ctx, make_algorithm, run_sim, small_federation

import pfedkit.algorithms.methods.fedrep as fedrep_module

HP = {"head_epochs": 1, "body_epochs": 1}


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_head_phase_comes_first_with_body_frozen_then_body_with_head_frozen(setup, monkeypatch):
    cfg, fed = setup
    algo = make_algorithm("fedrep", fed, HP, cfg=cfg)
    body, head = algo.keys("body"), algo.keys("head")
    phases = []
    real = fedrep_module.train_epochs

    def spy(model, *args, **kwargs):
        before_b, before_h = algo.snapshot(body), algo.snapshot(head)
        loss = real(model, *args, **kwargs)
        phases.append((_changed(before_b, algo.snapshot(body)), _changed(before_h, algo.snapshot(head))))
        return loss

    monkeypatch.setattr(fedrep_module, "train_epochs", spy)
    server = algo.init_server()
    algo.local_update(algo.broadcast(server, 1), algo.init_client(fed.clients[0]), fed.clients[0], ctx())
    # (body changed, head changed) per call: first the head alone, then the body alone
    assert phases == [(False, True), (True, False)]


def test_epoch_counts_select_the_trained_part(setup):
    cfg, fed = setup
    for hp, body_moves, head_moves in (({"head_epochs": 2, "body_epochs": 0}, False, True),
                                       ({"head_epochs": 0, "body_epochs": 2}, True, False)):
        algo = make_algorithm("fedrep", fed, hp, cfg=cfg)
        server, state = algo.init_server(), algo.init_client(fed.clients[1])
        up = algo.local_update(algo.broadcast(server, 1), state, fed.clients[1], ctx())
        assert set(up.upload) == set(algo.keys("body")) and set(up.state) == set(algo.keys("head"))
        assert _changed(server, up.upload) == body_moves
        assert _changed(state, up.state) == head_moves


def test_runs_two_rounds(setup):
    cfg, fed = setup
    res = run_sim("fedrep", fed, HP, rounds=2, cfg=cfg)
    key = make_algorithm("fedrep", fed, HP, cfg=cfg).keys("head")[0]
    assert not torch.allclose(res.client_states[0][key], res.client_states[1][key])
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
