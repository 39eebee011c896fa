"""FedALA: lower layers from the global model, top layers mixed element-wise,
theta_hat = theta_local + (theta_global - theta_local) * W with learned W in [0, 1]."""

import math

import pytest
import torch
from support import ctx, make_algorithm, run_sim, small_federation

from pfedkit.algorithms.methods.fedala import STARTED, WEIGHT


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def test_adapted_layers_come_from_the_model_head(setup):
    cfg, fed = setup
    algo = make_algorithm("fedala", fed, cfg=cfg)
    params = [n for n, _ in algo.model.named_parameters()]
    assert algo.top_keys == [n for n in params if n in algo.keys("head")]
    more = make_algorithm("fedala", fed, {"extra_body_tensors": 2}, cfg=cfg)
    body_params = [n for n in params if n in more.keys("body")]
    assert more.top_keys == body_params[-2:] + algo.top_keys


def test_first_participation_starts_from_the_global_model(setup):
    cfg, fed = setup
    algo = make_algorithm("fedala", fed, cfg=cfg)
    c = fed.clients[0]
    up = algo.local_update(algo.init_server(), algo.init_client(c), c, ctx())
    assert set(up.upload) == set(algo.model.state_dict())
    assert not any(k.startswith(WEIGHT) for k in up.state) and STARTED not in up.state


@pytest.mark.parametrize("eta", [1.0, 1e4])
def test_mixed_model_follows_the_formula_with_weights_in_unit_interval(setup, eta):
    cfg, fed = setup
    algo = make_algorithm("fedala", fed, {"eta": eta, "max_start_epochs": 3}, cfg=cfg)
    c0, c1 = fed.clients[0], fed.clients[1]
    server = algo.init_server()
    local = algo.local_update(server, algo.init_client(c0), c0, ctx(1, 0)).state
    other = algo.local_update(server, algo.init_client(c1), c1, ctx(1, 1)).upload  # a different "global"
    mixed, weights, _ = algo.adaptive_local_aggregation(other, local, None, c0, ctx(2, 0).generator, False)
    assert set(weights) == set(algo.top_keys)
    for key, w in weights.items():
        assert w.shape == local[key].shape
        assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0
        assert torch.allclose(mixed[key], local[key] + (other[key] - local[key]) * w, atol=1e-6)
    moved = torch.cat([(w != 1.0).flatten() for w in weights.values()])
    assert moved.any()  # W was learned, not left at its initial ones
    if eta > 1.0:  # a huge step drives weights onto the bounds: clipping is active
        flat = torch.cat([w.flatten() for w in weights.values()])
        assert ((flat == 0.0) | (flat == 1.0)).float().mean() > 0.5
    for key in mixed:
        if key not in weights:
            assert torch.equal(mixed[key], other[key])  # lower layers and buffers: global


def test_runs_two_rounds_and_keeps_weights_in_state(setup):
    cfg, fed = setup
    res = run_sim("fedala", fed, {"max_start_epochs": 3}, rounds=2, cfg=cfg)
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
    for state in res.client_states:
        ws = [v for k, v in state.items() if k.startswith(WEIGHT)]
        assert ws and all(float(w.min()) >= 0.0 and float(w.max()) <= 1.0 for w in ws)
        assert float(state[STARTED]) == 1.0
