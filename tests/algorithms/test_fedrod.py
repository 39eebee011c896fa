"""FedRoD: personal prediction = generic head + personal head; the generic head uses balanced softmax."""

import math

import pytest
import torch
import torch.nn.functional as F
from support import ctx, make_algorithm, run_sim, small_federation

from pfedkit.algorithms.methods.fedrod import HYPER, PERSONAL, balanced_softmax_loss


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def test_balanced_softmax_adds_the_log_label_prior():
    logits = torch.randn(5, 3)
    y = torch.tensor([0, 0, 1, 0, 2])
    counts = torch.tensor([30, 5, 1])
    expected = F.cross_entropy(logits + counts.float().log(), y)
    assert torch.allclose(balanced_softmax_loss(logits, y, counts), expected)
    assert not torch.allclose(expected, F.cross_entropy(logits, y))
    assert math.isfinite(float(balanced_softmax_loss(logits, y, torch.tensor([4, 1, 0]))))


def test_personal_prediction_is_generic_plus_personal_logits(setup):
    cfg, fed = setup
    res = run_sim("fedrod", fed, rounds=2, cfg=cfg)
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
    algo = make_algorithm("fedrod", fed, cfg=cfg)
    assert not any(k.startswith(PERSONAL) for k in res.server)
    data, state = fed.clients[0], res.client_states[0]
    with torch.no_grad():
        out = algo.personal_predictor(res.server, state, data, ctx())(data.x_val)
        algo.load(res.server)
        feats = algo.model.features(data.x_val)
        generic = algo.model.head(feats)
        # the tiny model's head is one linear layer: the personal head is its twin
        personal = F.linear(feats, state[PERSONAL + "weight"], state[PERSONAL + "bias"])
    assert personal.abs().max() > 1e-4  # the personal head trained
    assert torch.allclose(out, generic + personal, atol=1e-5)


def test_untrained_client_predicts_with_the_generic_head(setup):
    cfg, fed = setup
    algo = make_algorithm("fedrod", fed, cfg=cfg)
    server, data = algo.init_server(), fed.clients[1]
    with torch.no_grad():
        out = algo.personal_predictor(server, algo.init_client(data), data, ctx())(data.x_val)
        algo.load(server)
        assert torch.allclose(out, algo.model(data.x_val))


def test_personal_head_does_not_influence_the_shared_update(setup):
    cfg, fed = setup
    algo = make_algorithm("fedrod", fed, cfg=cfg)
    server, data = algo.init_server(), fed.clients[2]
    zero = algo.init_client(data)
    other = {k: torch.randn_like(v) for k, v in zero.items()}
    a = algo.local_update(server, zero, data, ctx())
    b = algo.local_update(server, other, data, ctx())
    assert set(a.upload) == set(algo.model.state_dict()) and set(a.state) == set(zero)
    assert all(torch.equal(a.upload[k], b.upload[k]) for k in a.upload)  # features/logits detached
    assert any(not torch.equal(a.state[k], b.state[k]) for k in a.state)


def test_hyper_variant_generates_personal_heads_from_label_distributions(setup):
    cfg, fed = setup
    algo = make_algorithm("fedrod", fed, {"personal": "hyper"}, cfg=cfg)
    server = algo.init_server()
    hyper_keys = {k for k in server if k.startswith(HYPER)}
    assert hyper_keys and algo.init_client(fed.clients[0]) == {}
    a, b = fed.clients[0], fed.clients[1]
    assert not torch.equal(a.class_counts("train"), b.class_counts("train"))
    with torch.no_grad():  # the generated heads start at zero: personal = generic prediction
        algo.load(server)
        assert torch.allclose(algo.personal_predictor(server, {}, a, ctx())(a.x_val), algo.model(a.x_val))
    up = algo.local_update(server, {}, a, ctx())
    assert up.state == {} and hyper_keys <= set(up.upload)
    assert any(not torch.equal(up.upload[k], server[k]) for k in hyper_keys)  # the personal loss trains it
    new = {**server, **up.upload}
    with torch.no_grad():
        algo.load(new)
        generic = algo.model(a.x_val)
        head_a = algo.personal_predictor(new, {}, a, ctx())(a.x_val) - generic
        head_b = algo.personal_predictor(new, {}, b, ctx())(a.x_val) - generic
    assert head_a.abs().max() > 1e-4 and not torch.allclose(head_a, head_b)  # heads follow the labels
    res = run_sim("fedrod", fed, {"personal": "hyper"}, rounds=2, cfg=cfg)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
