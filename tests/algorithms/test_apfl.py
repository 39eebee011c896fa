"""APFL: personal model = alpha * v + (1 - alpha) * w with a learned alpha in [0, 1]."""

import math

import pytest
import torch
from support import ctx, make_algorithm, run_sim, small_federation
from torch.func import functional_call

from pfedkit.algorithms.methods.apfl import ALPHA, LOCAL


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def test_alpha_updates_and_stays_in_unit_interval(setup):
    cfg, fed = setup
    data = fed.clients[0]
    algo = make_algorithm("apfl", fed, cfg=cfg)
    bcast = algo.broadcast(algo.init_server(), 1)
    up = algo.local_update(bcast, algo.init_client(data), data, ctx())
    alpha = float(up.state[ALPHA])
    assert 0.0 <= alpha <= 1.0 and alpha != 0.5
    # a huge alpha step size must still be clipped to [0, 1]
    for init in (0.0, 1.0):
        algo = make_algorithm("apfl", fed, {"alpha_init": init, "alpha_lr_scale": 100.0}, cfg=cfg)
        up = algo.local_update(bcast, {}, data, ctx())
        assert 0.0 <= float(up.state[ALPHA]) <= 1.0
    fixed = make_algorithm("apfl", fed, {"adaptive": False, "alpha_init": 0.3}, cfg=cfg)
    assert float(fixed.local_update(bcast, {}, data, ctx()).state[ALPHA]) == pytest.approx(0.3)


def test_global_part_is_trained_exactly_like_fedavg(setup):
    cfg, fed = setup
    data = fed.clients[1]
    apfl, fedavg = make_algorithm("apfl", fed, cfg=cfg), make_algorithm("fedavg", fed, cfg=cfg)
    bcast = apfl.broadcast(apfl.init_server(), 1)
    a = apfl.local_update(bcast, {}, data, ctx())
    b = fedavg.local_update(bcast, {}, data, ctx())
    assert set(a.upload) == set(b.upload)
    assert all(torch.allclose(a.upload[k], b.upload[k], atol=1e-6) for k in a.upload)
    assert not set(a.upload) & set(a.state)


def test_the_local_model_trains_in_the_workspace_layout_whatever_layout_the_state_has(setup):
    """A state whose tensors come back contiguous (as the Flower codec returns them) gives the same
    update as the same values in the model's channels-last layout: v is copied into that layout."""
    cfg, fed = setup
    data = fed.clients[0]
    algo = make_algorithm("apfl", fed, cfg=cfg)
    bcast = algo.broadcast(algo.init_server(), 1)
    state = algo.local_update(bcast, {}, data, ctx()).state
    contiguous = {k: t.clone(memory_format=torch.contiguous_format) for k, t in state.items()}
    layouts = {k: t.stride() for k, t in algo.model.state_dict().items()}
    assert any(contiguous[LOCAL + k].stride() != s for k, s in layouts.items())  # the CNN is channels-last
    new = algo.local_update(bcast, contiguous, data, ctx()).state
    assert all(new[LOCAL + k].stride() == s for k, s in layouts.items())
    same = algo.local_update(bcast, state, data, ctx()).state
    assert all(torch.equal(new[k], same[k]) for k in same)


def test_personal_prediction_mixes_local_and_global_parameters(setup):
    cfg, fed = setup
    data = fed.clients[2]
    algo = make_algorithm("apfl", fed, cfg=cfg)
    bcast = algo.broadcast(algo.init_server(), 1)
    state = algo.local_update(bcast, {}, data, ctx()).state
    w = algo.local_update(bcast, {}, fed.clients[3], ctx()).upload  # some other global model
    alpha = float(state[ALPHA])
    mixed = {k: alpha * state[LOCAL + k] + (1 - alpha) * w[k] for k in w}
    with torch.no_grad():
        out = algo.personal_predictor(w, state, data, ctx())(data.x_val)
        expected = functional_call(algo.model, mixed, (data.x_val,))
        assert torch.allclose(out, expected, atol=1e-5)
        algo.load(w)
        assert not torch.allclose(out, algo.model(data.x_val), atol=1e-3)


def test_runs_two_rounds(setup):
    cfg, fed = setup
    res = run_sim("apfl", fed, rounds=2, cfg=cfg)
    alphas = [float(s[ALPHA]) for s in res.client_states]
    assert all(0.0 <= a <= 1.0 for a in alphas)
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
